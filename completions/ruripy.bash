# bash completion for ruripy. Generated from the CLI by 'python -m ruripy.completion --write': do not edit.
# Install: ruripy completion bash > ~/.local/share/bash-completion/completions/ruripy
_ruripy_commands="pull,images,rmi,search,create,import,export,run,exec,start,stop,ps,list,ls,rm,rename,clone,config,doctor,completion"
_ruripy_global="--version,--quiet,-q,--help,-h"

# _ruripy_spec CMD: its options, those taking a value, and its positional kinds.
_ruripy_spec() {
    case $1 in
        pull) opts="--name,--arch,--mirror,--insecure,--quiet,-q,--json,--help,-h" vopts="--name,--arch,--mirror" args="catalog+file" ;;
        images|ps|list|ls|doctor) opts="--json,--help,-h" vopts="" args="" ;;
        rmi) opts="--force,-f,--help,-h" vopts="" args="images..." ;;
        search) opts="--mirror,--arch,--json,--help,-h" vopts="--mirror,--arch" args="-" ;;
        create) opts="--ruri-config,--backend,--user,-u,--workdir,-w,--env,-e,--bind,-b,--hostname,--net,--read-only,--cap-add,--cap-drop,--seccomp,--deny-syscall,--unmask,--no-new-privs,--allow-new-privs,--arch,--memory,--cpus,--pids-limit,--tty,-t,--help,-h" vopts="--ruri-config,--backend,--user,-u,--workdir,-w,--env,-e,--bind,-b,--hostname,--net,--cap-add,--cap-drop,--seccomp,--deny-syscall,--arch,--memory,--cpus,--pids-limit" args="- images" ;;
        import) opts="--ruri-config,--backend,--user,-u,--workdir,-w,--env,-e,--bind,-b,--hostname,--net,--read-only,--cap-add,--cap-drop,--seccomp,--deny-syscall,--unmask,--no-new-privs,--allow-new-privs,--arch,--memory,--cpus,--pids-limit,--tty,-t,--help,-h" vopts="--ruri-config,--backend,--user,-u,--workdir,-w,--env,-e,--bind,-b,--hostname,--net,--cap-add,--cap-drop,--seccomp,--deny-syscall,--arch,--memory,--cpus,--pids-limit" args="- file" ;;
        export) opts="--help,-h" vopts="" args="containers file" ;;
        run) opts="--backend,--user,-u,--workdir,-w,--env,-e,--bind,-b,--hostname,--net,--read-only,--cap-add,--cap-drop,--seccomp,--deny-syscall,--unmask,--no-new-privs,--allow-new-privs,--arch,--memory,--cpus,--pids-limit,--tty,-t,--help,-h" vopts="--backend,--user,-u,--workdir,-w,--env,-e,--bind,-b,--hostname,--net,--cap-add,--cap-drop,--seccomp,--deny-syscall,--arch,--memory,--cpus,--pids-limit" args="containers stop" ;;
        exec) opts="--user,-u,--workdir,-w,--env,-e,--tty,-t,--help,-h" vopts="--user,-u,--workdir,-w,--env,-e" args="running stop" ;;
        start) opts="--help,-h" vopts="" args="containers" ;;
        stop) opts="--time,-t,--help,-h" vopts="--time,-t" args="running" ;;
        rm) opts="--force,-f,--help,-h" vopts="" args="containers..." ;;
        rename|clone) opts="--force,-f,--help,-h" vopts="" args="containers -" ;;
        config) opts="--set,--unset,--json,--help,-h" vopts="--set,--unset" args="containers" ;;
        completion) opts="--help,-h" vopts="" args="w:bash,zsh,fish" ;;
        *) return 1 ;;
    esac
}

# _ruripy_value CMD OPTION: what the option's value is.
_ruripy_value() {
    case "$1 $2" in
        "pull --arch"|"search --arch"|"create --arch"|"import --arch"|"run --arch") echo 'w:amd64,arm64,armhf,armel,i386,riscv64,ppc64el,s390x,loong64' ;;
        "create --ruri-config"|"create --bind"|"create -b"|"import --ruri-config"|"import --bind"|"import -b"|"run --bind"|"run -b") echo 'file' ;;
        "create --backend"|"import --backend"|"run --backend") echo 'w:auto,rootless,privileged,proot' ;;
        "create --net"|"import --net"|"run --net") echo 'w:host,none' ;;
        "create --cap-add"|"create --cap-drop"|"import --cap-add"|"import --cap-drop"|"run --cap-add"|"run --cap-drop") echo 'w:ALL,CHOWN,DAC_OVERRIDE,DAC_READ_SEARCH,FOWNER,FSETID,KILL,SETGID,SETUID,SETPCAP,LINUX_IMMUTABLE,NET_BIND_SERVICE,NET_BROADCAST,NET_ADMIN,NET_RAW,IPC_LOCK,IPC_OWNER,SYS_MODULE,SYS_RAWIO,SYS_CHROOT,SYS_PTRACE,SYS_PACCT,SYS_ADMIN,SYS_BOOT,SYS_NICE,SYS_RESOURCE,SYS_TIME,SYS_TTY_CONFIG,MKNOD,LEASE,AUDIT_WRITE,AUDIT_CONTROL,SETFCAP,MAC_OVERRIDE,MAC_ADMIN,SYSLOG,WAKE_ALARM,BLOCK_SUSPEND,AUDIT_READ,PERFMON,BPF,CHECKPOINT_RESTORE' ;;
        "create --seccomp"|"import --seccomp"|"run --seccomp") echo 'w:default,off+file' ;;
        "config --set") echo 'eq:backend,user,workdir,env,bind,hostname,net,read_only,cap_add,cap_drop,seccomp,deny_syscall,unmask,no_new_privs,arch,memory,cpus,pids_limit,tty,command,entrypoint' ;;
        "config --unset") echo 'w:backend,user,workdir,env,bind,hostname,net,read_only,cap_add,cap_drop,seccomp,deny_syscall,unmask,no_new_privs,arch,memory,cpus,pids_limit,tty,command,entrypoint' ;;
    esac
}

# _ruripy_fill KIND PREFIX [LEAD]: add the completions of KIND for PREFIX to COMPREPLY.
_ruripy_fill() {
    local cur=$2 lead=$3 src w prog=${COMP_WORDS[0]}
    local -a srcs items
    [[ $prog == */* && -x $prog ]] || prog=ruripy
    IFS=+ read -ra srcs <<<"$1"
    for src in "${srcs[@]}"; do
        items=()
        case $src in
            w:*) IFS=, read -ra items <<<"${src#w:}" ;;
            eq:*)
                IFS=, read -ra items <<<"${src#eq:}"
                items=("${items[@]/%/=}")
                compopt -o nospace 2>/dev/null
                ;;
            file)
                compopt -o filenames 2>/dev/null
                mapfile -t items < <(compgen -f -- "$cur")
                ;;
            *) mapfile -t items < <("$prog" __complete "$src" "$cur" 2>/dev/null) ;;
        esac
        for w in "${items[@]}"; do
            [[ -n $w && $w == "$cur"* ]] && COMPREPLY+=("$lead$w")
        done
    done
}

_ruripy() {
    COMPREPLY=()
    local line=${COMP_LINE:0:COMP_POINT} cur="" cmd="" w opt kind
    local -a words
    read -ra words <<<"$line"
    if [[ -n $line && $line != *[[:space:]] && ${#words[@]} -gt 0 ]]; then
        cur=${words[${#words[@]}-1]}
        unset 'words[${#words[@]}-1]'
    fi
    local i=1 n=0 dashdash=0 value_of="" stopped=0
    while ((i < ${#words[@]})); do
        [[ ${words[i]} == -* ]] || { cmd=${words[i]}; break; }
        ((i++))
    done
    local opts="" vopts="" args=""
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            _ruripy_fill "w:$_ruripy_global" "$cur"
        else
            _ruripy_fill "w:$_ruripy_commands" "$cur"
        fi
    elif _ruripy_spec "$cmd"; then
        local -a kinds=($args)
        for ((i++; i < ${#words[@]}; i++)); do
            w=${words[i]}
            if ((dashdash)) || [[ $w != -?* ]]; then
                if [[ ${kinds[n]} == stop ]]; then stopped=1; break; fi
                ((n++))
            elif [[ $w == -- ]]; then
                dashdash=1
            elif [[ $w != *=* && ,$vopts, == *,$w,* ]]; then
                if ((i + 1 == ${#words[@]})); then value_of=$w; else ((i++)); fi
            fi
        done
        if ((stopped)); then
            :
        elif [[ -n $value_of ]]; then
            _ruripy_fill "$(_ruripy_value "$cmd" "$value_of")" "$cur"
        elif [[ $cur == -?*=* && $dashdash == 0 ]]; then
            opt=${cur%%=*}
            if [[ ,$vopts, == *,$opt,* ]]; then
                _ruripy_fill "$(_ruripy_value "$cmd" "$opt")" "${cur#*=}" "$opt="
            fi
        elif [[ $cur == -* && $dashdash == 0 ]]; then
            _ruripy_fill "w:$opts" "$cur"
        else
            if ((n >= ${#kinds[@]} && ${#kinds[@]} > 0)) && [[ ${kinds[-1]} == *... ]]; then
                n=$((${#kinds[@]} - 1))
            fi
            kind=${kinds[n]%...}
            [[ -n $kind && $kind != [-] && $kind != stop ]] && _ruripy_fill "$kind" "$cur"
        fi
    fi
    # Completions must start where bash's word starts: after the last ':' or '=' that is a
    # word break (image names hold colons, --opt=value an equals sign).
    local breaks=""
    [[ $COMP_WORDBREAKS == *:* ]] && breaks+=":"
    [[ $COMP_WORDBREAKS == *=* ]] && breaks+="="
    if [[ -n $breaks && $cur == *["$breaks"]* ]]; then
        local keep=${cur##*["$breaks"]}
        local drop=${cur%"$keep"}
        COMPREPLY=("${COMPREPLY[@]#"$drop"}")
    fi
    return 0
}

complete -F _ruripy ruripy
