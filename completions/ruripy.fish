# fish completion for ruripy. Generated from the CLI by 'python -m ruripy.completion --write': do not edit.
# Install: ruripy completion fish > ~/.config/fish/completions/ruripy.fish

# The command at the cursor (first word that is not an option), or nothing.
function __ruripy_cmd
    for w in (commandline -opc)[2..-1]
        string match -q -- '-*' $w; or begin; echo $w; return 0; end
    end
    return 1
end

function __ruripy_cmd_is
    test "$(__ruripy_cmd)" = "$argv[1]"
end

# __ruripy_at KIND: true when the positional argument at the cursor is of KIND.
function __ruripy_at
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    string match -q -- '-*' $cur; and return 1
    set -l cmd (__ruripy_cmd)
    test -n "$cmd"; or return 1
    set -l spec (__ruripy_spec $cmd)
    set -l vopts (string split , -- $spec[1])
    set -l kinds (string split ' ' -- $spec[2])
    set -l n 1
    set -l dashdash 0
    set -l skip 0
    set -l seen 0
    for w in $words[2..-1]
        if test $seen = 0
            string match -q -- '-*' $w; or set seen 1
            continue
        end
        if test $skip = 1
            set skip 0
        else if test $dashdash = 1; or not string match -q -- '-?*' $w
            test "$kinds[$n]" = stop; and return 1
            set n (math $n + 1)
        else if test "$w" = --
            set dashdash 1
        else if contains -- $w $vopts
            set skip 1
        end
    end
    test $skip = 1; and return 1
    if test $n -gt (count $kinds); and string match -q -- '*...' $kinds[-1]
        set n (count $kinds)
    end
    test $n -le (count $kinds); or return 1
    test (string replace -r '\.\.\.$' '' -- $kinds[$n]) = $argv[1]
end

function __ruripy_names
    set -l prog ruripy
    set -l first (commandline -opc)[1]
    string match -q -- '*/*' $first; and test -x $first; and set prog $first
    $prog __complete $argv[1] (commandline -ct) 2>/dev/null
end

function __ruripy_spec
    switch $argv[1]
        case pull
            echo '--name,--arch,--mirror'
            echo 'catalog+file'
        case images
            echo ''
            echo '-'
        case rmi
            echo ''
            echo 'images...'
        case search
            echo '--mirror,--arch'
            echo '-'
        case create
            echo '--ruri-config,--backend,--user,-u,--workdir,-w,--env,-e,--bind,-b,--hostname,--net,--cap-add,--cap-drop,--seccomp,--deny-syscall,--arch,--memory,--cpus,--pids-limit'
            echo '- images'
        case import
            echo '--ruri-config,--backend,--user,-u,--workdir,-w,--env,-e,--bind,-b,--hostname,--net,--cap-add,--cap-drop,--seccomp,--deny-syscall,--arch,--memory,--cpus,--pids-limit'
            echo '- file'
        case export
            echo ''
            echo 'containers file'
        case run
            echo '--backend,--user,-u,--workdir,-w,--env,-e,--bind,-b,--hostname,--net,--cap-add,--cap-drop,--seccomp,--deny-syscall,--arch,--memory,--cpus,--pids-limit'
            echo 'containers stop'
        case exec
            echo '--user,-u,--workdir,-w,--env,-e'
            echo 'running stop'
        case start
            echo ''
            echo 'containers'
        case stop
            echo '--time,-t'
            echo 'running'
        case ps
            echo ''
            echo '-'
        case list
            echo ''
            echo '-'
        case ls
            echo ''
            echo '-'
        case rm
            echo ''
            echo 'containers...'
        case rename
            echo ''
            echo 'containers -'
        case clone
            echo ''
            echo 'containers -'
        case config
            echo '--set,--unset'
            echo 'containers'
        case doctor
            echo ''
            echo '-'
        case completion
            echo ''
            echo 'w:bash,zsh,fish'
    end
end

complete -c ruripy -f
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -l version -d 'Show the version.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -l quiet -s q -d 'No progress output (pull, import, export).'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a pull -d 'Download an image (catalog, LXC image server, registry or tarball) into the store.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a images -d 'List pulled images: name, kind, architecture, size, created, digest.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a rmi -d 'Remove pulled images; refused while containers use them unless --force.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a search -d 'List the catalog\'s distros and releases that the image server has for ARCH.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a create -d 'Create a container from a pulled image (an overlay over it: instant, almost no disk).'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a import -d 'Create a container from a rootfs folder or tarball (.tar, .gz, .xz, .zst, .bz2).'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a export -d 'Write a container\'s root filesystem as a tarball (\'-\' writes tar to stdout).'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a run -d 'Run a command in a container (a login shell by default); joins it if running.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a exec -d 'Run a command in a running container, joining its namespaces.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a start -d 'Start a container detached: its init stays up for later \'exec\'.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a stop -d 'Stop a running container: SIGTERM to everything in it, then SIGKILL.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a ps -d 'List running containers: name, init pid, backend, since.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a list -d 'List every container with its image, backend, storage, size and status.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a ls -d 'Alias of list.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a rm -d 'Remove containers (and their files).'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a rename -d 'Rename a stopped container.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a clone -d 'Copy a container (instant with overlay: only its changes are copied).'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a config -d 'Show a container\'s profile, or edit it with --set and --unset.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a doctor -d 'Check what this host allows (user namespaces, id maps, overlayfs, ...) and how to fix what it lacks.'
complete -c ruripy -n 'not __ruripy_cmd >/dev/null' -a completion -d 'Print the completion script for SHELL (README: \'Shell completion\' says where it goes).'
complete -c ruripy -n '__ruripy_cmd_is pull' -l name -d 'Also create container NAME from the image.' -x
complete -c ruripy -n '__ruripy_cmd_is pull' -l arch -d 'Architecture to pull (amd64, arm64, armhf, ...; default: this machine\'s).' -x -a 'amd64 arm64 armhf armel i386 riscv64 ppc64el s390x loong64'
complete -c ruripy -n '__ruripy_cmd_is pull' -l mirror -d 'Base URL of an LXC image server (default: $RURIPY_LXC_MIRROR, else https://images.linuxcontainers.org).' -x
complete -c ruripy -n '__ruripy_cmd_is pull' -l insecure -d 'Allow plain-HTTP registries that are not loopback.'
complete -c ruripy -n '__ruripy_cmd_is pull' -l quiet -s q -d 'No progress output.'
complete -c ruripy -n '__ruripy_cmd_is pull' -l json -d 'JSON output.'
complete -c ruripy -n '__ruripy_cmd_is pull' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is images' -l json -d 'JSON output.'
complete -c ruripy -n '__ruripy_cmd_is images' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is rmi' -l force -s f -d 'Remove even if containers use it.'
complete -c ruripy -n '__ruripy_cmd_is rmi' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is search' -l mirror -d 'Base URL of an LXC image server (default: $RURIPY_LXC_MIRROR, else https://images.linuxcontainers.org).' -x
complete -c ruripy -n '__ruripy_cmd_is search' -l arch -d 'Architecture to pull (amd64, arm64, armhf, ...; default: this machine\'s).' -x -a 'amd64 arm64 armhf armel i386 riscv64 ppc64el s390x loong64'
complete -c ruripy -n '__ruripy_cmd_is search' -l json -d 'JSON output.'
complete -c ruripy -n '__ruripy_cmd_is search' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is create' -l ruri-config -d 'Start the profile from a ruri config file (ruri -D); keys ruripy cannot honour are named in warnings. Options given here go on top.' -r -F
complete -c ruripy -n '__ruripy_cmd_is create' -l backend -d 'How to enter the container' -x -a 'auto rootless privileged proot'
complete -c ruripy -n '__ruripy_cmd_is create' -l user -s u -d 'User inside: a name from the container\'s /etc/passwd, or numeric' -x
complete -c ruripy -n '__ruripy_cmd_is create' -l workdir -s w -d 'Working directory inside' -x
complete -c ruripy -n '__ruripy_cmd_is create' -l env -s e -d 'Set an environment variable (repeatable)' -x
complete -c ruripy -n '__ruripy_cmd_is create' -l bind -s b -d 'Bind-mount a host path (repeatable)' -r -F
complete -c ruripy -n '__ruripy_cmd_is create' -l hostname -d 'Hostname inside (its own UTS namespace)' -x
complete -c ruripy -n '__ruripy_cmd_is create' -l net -d 'Share the host network, or get only a loopback' -x -a 'host none'
complete -c ruripy -n '__ruripy_cmd_is create' -l read-only -d 'Make the root filesystem read-only'
complete -c ruripy -n '__ruripy_cmd_is create' -l cap-add -d 'Keep a capability (repeatable; ALL allowed)' -x -a 'ALL CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE'
complete -c ruripy -n '__ruripy_cmd_is create' -l cap-drop -d 'Drop a capability (repeatable; ALL allowed)' -x -a 'ALL CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE'
complete -c ruripy -n '__ruripy_cmd_is create' -l seccomp -d 'Syscall filter: the built-in profile, none, or a profile file' -r -F -a 'default off'
complete -c ruripy -n '__ruripy_cmd_is create' -l deny-syscall -d 'Add a system call to the filter (repeatable)' -x
complete -c ruripy -n '__ruripy_cmd_is create' -l unmask -d 'Do not mask /proc and /sys entries (ruri\'s -A)'
complete -c ruripy -n '__ruripy_cmd_is create' -l no-new-privs -l allow-new-privs -d 'Set no_new_privs (default; --allow-new-privs lets sudo and su work inside)'
complete -c ruripy -n '__ruripy_cmd_is create' -l arch -d 'Run a foreign-architecture rootfs through qemu-user' -x -a 'amd64 arm64 armhf armel i386 riscv64 ppc64el s390x loong64'
complete -c ruripy -n '__ruripy_cmd_is create' -l memory -d 'Memory limit, e.g. 512m or 2g' -x
complete -c ruripy -n '__ruripy_cmd_is create' -l cpus -d 'CPU limit in CPUs, e.g. 1.5' -x
complete -c ruripy -n '__ruripy_cmd_is create' -l pids-limit -d 'Limit on the number of processes' -x
complete -c ruripy -n '__ruripy_cmd_is create' -l tty -s t -d 'Allocate a new pseudo-terminal instead of sharing the caller\'s'
complete -c ruripy -n '__ruripy_cmd_is create' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is import' -l ruri-config -d 'Start the profile from a ruri config file (ruri -D); keys ruripy cannot honour are named in warnings. Options given here go on top.' -r -F
complete -c ruripy -n '__ruripy_cmd_is import' -l backend -d 'How to enter the container' -x -a 'auto rootless privileged proot'
complete -c ruripy -n '__ruripy_cmd_is import' -l user -s u -d 'User inside: a name from the container\'s /etc/passwd, or numeric' -x
complete -c ruripy -n '__ruripy_cmd_is import' -l workdir -s w -d 'Working directory inside' -x
complete -c ruripy -n '__ruripy_cmd_is import' -l env -s e -d 'Set an environment variable (repeatable)' -x
complete -c ruripy -n '__ruripy_cmd_is import' -l bind -s b -d 'Bind-mount a host path (repeatable)' -r -F
complete -c ruripy -n '__ruripy_cmd_is import' -l hostname -d 'Hostname inside (its own UTS namespace)' -x
complete -c ruripy -n '__ruripy_cmd_is import' -l net -d 'Share the host network, or get only a loopback' -x -a 'host none'
complete -c ruripy -n '__ruripy_cmd_is import' -l read-only -d 'Make the root filesystem read-only'
complete -c ruripy -n '__ruripy_cmd_is import' -l cap-add -d 'Keep a capability (repeatable; ALL allowed)' -x -a 'ALL CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE'
complete -c ruripy -n '__ruripy_cmd_is import' -l cap-drop -d 'Drop a capability (repeatable; ALL allowed)' -x -a 'ALL CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE'
complete -c ruripy -n '__ruripy_cmd_is import' -l seccomp -d 'Syscall filter: the built-in profile, none, or a profile file' -r -F -a 'default off'
complete -c ruripy -n '__ruripy_cmd_is import' -l deny-syscall -d 'Add a system call to the filter (repeatable)' -x
complete -c ruripy -n '__ruripy_cmd_is import' -l unmask -d 'Do not mask /proc and /sys entries (ruri\'s -A)'
complete -c ruripy -n '__ruripy_cmd_is import' -l no-new-privs -l allow-new-privs -d 'Set no_new_privs (default; --allow-new-privs lets sudo and su work inside)'
complete -c ruripy -n '__ruripy_cmd_is import' -l arch -d 'Run a foreign-architecture rootfs through qemu-user' -x -a 'amd64 arm64 armhf armel i386 riscv64 ppc64el s390x loong64'
complete -c ruripy -n '__ruripy_cmd_is import' -l memory -d 'Memory limit, e.g. 512m or 2g' -x
complete -c ruripy -n '__ruripy_cmd_is import' -l cpus -d 'CPU limit in CPUs, e.g. 1.5' -x
complete -c ruripy -n '__ruripy_cmd_is import' -l pids-limit -d 'Limit on the number of processes' -x
complete -c ruripy -n '__ruripy_cmd_is import' -l tty -s t -d 'Allocate a new pseudo-terminal instead of sharing the caller\'s'
complete -c ruripy -n '__ruripy_cmd_is import' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is export' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is run' -l backend -d 'How to enter the container' -x -a 'auto rootless privileged proot'
complete -c ruripy -n '__ruripy_cmd_is run' -l user -s u -d 'User inside: a name from the container\'s /etc/passwd, or numeric' -x
complete -c ruripy -n '__ruripy_cmd_is run' -l workdir -s w -d 'Working directory inside' -x
complete -c ruripy -n '__ruripy_cmd_is run' -l env -s e -d 'Set an environment variable (repeatable)' -x
complete -c ruripy -n '__ruripy_cmd_is run' -l bind -s b -d 'Bind-mount a host path (repeatable)' -r -F
complete -c ruripy -n '__ruripy_cmd_is run' -l hostname -d 'Hostname inside (its own UTS namespace)' -x
complete -c ruripy -n '__ruripy_cmd_is run' -l net -d 'Share the host network, or get only a loopback' -x -a 'host none'
complete -c ruripy -n '__ruripy_cmd_is run' -l read-only -d 'Make the root filesystem read-only'
complete -c ruripy -n '__ruripy_cmd_is run' -l cap-add -d 'Keep a capability (repeatable; ALL allowed)' -x -a 'ALL CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE'
complete -c ruripy -n '__ruripy_cmd_is run' -l cap-drop -d 'Drop a capability (repeatable; ALL allowed)' -x -a 'ALL CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE'
complete -c ruripy -n '__ruripy_cmd_is run' -l seccomp -d 'Syscall filter: the built-in profile, none, or a profile file' -r -F -a 'default off'
complete -c ruripy -n '__ruripy_cmd_is run' -l deny-syscall -d 'Add a system call to the filter (repeatable)' -x
complete -c ruripy -n '__ruripy_cmd_is run' -l unmask -d 'Do not mask /proc and /sys entries (ruri\'s -A)'
complete -c ruripy -n '__ruripy_cmd_is run' -l no-new-privs -l allow-new-privs -d 'Set no_new_privs (default; --allow-new-privs lets sudo and su work inside)'
complete -c ruripy -n '__ruripy_cmd_is run' -l arch -d 'Run a foreign-architecture rootfs through qemu-user' -x -a 'amd64 arm64 armhf armel i386 riscv64 ppc64el s390x loong64'
complete -c ruripy -n '__ruripy_cmd_is run' -l memory -d 'Memory limit, e.g. 512m or 2g' -x
complete -c ruripy -n '__ruripy_cmd_is run' -l cpus -d 'CPU limit in CPUs, e.g. 1.5' -x
complete -c ruripy -n '__ruripy_cmd_is run' -l pids-limit -d 'Limit on the number of processes' -x
complete -c ruripy -n '__ruripy_cmd_is run' -l tty -s t -d 'Allocate a new pseudo-terminal instead of sharing the caller\'s'
complete -c ruripy -n '__ruripy_cmd_is run' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is exec' -l user -s u -d 'User inside: a name from the container\'s /etc/passwd, or numeric' -x
complete -c ruripy -n '__ruripy_cmd_is exec' -l workdir -s w -d 'Working directory inside' -x
complete -c ruripy -n '__ruripy_cmd_is exec' -l env -s e -d 'Set an environment variable (repeatable)' -x
complete -c ruripy -n '__ruripy_cmd_is exec' -l tty -s t -d 'Allocate a new pseudo-terminal instead of sharing the caller\'s'
complete -c ruripy -n '__ruripy_cmd_is exec' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is start' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is stop' -l time -s t -d 'Seconds to wait before SIGKILL.' -x
complete -c ruripy -n '__ruripy_cmd_is stop' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is ps' -l json -d 'JSON output.'
complete -c ruripy -n '__ruripy_cmd_is ps' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is list' -l json -d 'JSON output.'
complete -c ruripy -n '__ruripy_cmd_is list' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is ls' -l json -d 'JSON output.'
complete -c ruripy -n '__ruripy_cmd_is ls' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is rm' -l force -s f -d 'Stop running ones first.'
complete -c ruripy -n '__ruripy_cmd_is rm' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is rename' -l force -s f -d 'Rename it even while it runs.'
complete -c ruripy -n '__ruripy_cmd_is rename' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is clone' -l force -s f -d 'Copy it even while it runs.'
complete -c ruripy -n '__ruripy_cmd_is clone' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is config' -l set -d 'Set KEY=VALUE in the profile (repeatable).' -x -a 'backend= user= workdir= env= bind= hostname= net= read_only= cap_add= cap_drop= seccomp= deny_syscall= unmask= no_new_privs= arch= memory= cpus= pids_limit= tty= command= entrypoint='
complete -c ruripy -n '__ruripy_cmd_is config' -l unset -d 'Reset KEY to its default (repeatable).' -x -a 'backend user workdir env bind hostname net read_only cap_add cap_drop seccomp deny_syscall unmask no_new_privs arch memory cpus pids_limit tty command entrypoint'
complete -c ruripy -n '__ruripy_cmd_is config' -l json -d 'JSON output.'
complete -c ruripy -n '__ruripy_cmd_is config' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is doctor' -l json -d 'JSON output.'
complete -c ruripy -n '__ruripy_cmd_is doctor' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_cmd_is completion' -l help -s h -d 'Show this message and exit.'
complete -c ruripy -n '__ruripy_at catalog+file' -f -a '(__ruripy_names catalog)'
complete -c ruripy -n '__ruripy_at catalog+file; and string match -qr -- \'^[./~]|/\' (commandline -ct)' -F
complete -c ruripy -n '__ruripy_at containers' -f -a '(__ruripy_names containers)'
complete -c ruripy -n '__ruripy_at file' -F
complete -c ruripy -n '__ruripy_at images' -f -a '(__ruripy_names images)'
complete -c ruripy -n '__ruripy_at running' -f -a '(__ruripy_names running)'
complete -c ruripy -n '__ruripy_at w:bash,zsh,fish' -f -a 'bash zsh fish'
