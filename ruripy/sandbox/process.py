"""The container's command process, and what starting and joining a container share.

Inside the container: the user the command runs as, from the container's /etc/passwd and
/etc/group (`lookup`, `resolve_user`); taking it with the capabilities and the working
folder (`assume`); then C3 of a start execs the command (`become`, seccomp last), and an
exec's P starts it with posix_spawn (`spawn`). Also the pieces both process trees use:
running a child with its errors reported (`child_main`), waiting while passing signals
on, the terminal relay, the identity of a process (start time, boot id, namespaces).
Standard library only; nothing here imports anything once a child is inside the rootfs.
"""

import _signal as sig
import os
import sys

from ..errors import RuripyError
from . import syscalls

# Signals P and pid 1 take over and pass on (runtime.md 6.3); job-control ones stay default.
FORWARDED = (1, 2, 3, 10, 12, 14, 15, 28)  # HUP INT QUIT USR1 USR2 ALRM TERM WINCH
WAITED = (17, *FORWARDED)  # plus CHLD
SIGIO = 29  # a pipe with O_ASYNC has data (wait_forwarding's status pipe)
SI_USER_CODES = (0, -1, -6)  # SI_USER, SI_QUEUE, SI_TKILL: sent with kill(), not the terminal
NS_NAMES = ("user", "mnt", "pid", "uts", "ipc", "net")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Test hooks: with "1" (tests/security, P0-E7) C3 reports whether it is dumpable, then
# stops itself inside the container before anything else, until a SIGCONT; with "join"
# (tests/test_lifecycle.py) a join stops itself just before its setns.
TEST_PAUSE = os.environ.get("RURIPY_TEST_PAUSE")
terminal = None  # the terminal module, loaded by tty_socket() only when --tty asks for it


def say(msg: str) -> None:
    try:
        os.write(2, f"ruripy: {msg}\n".encode(errors="replace"))
    except OSError:
        pass


def status_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def read_all(fd: int) -> bytes:
    out = []
    while True:
        try:
            b = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not b:
            return b"".join(out)
        out.append(b)


def starttime(pid: int) -> int | None:
    """Start time of `pid` (clock ticks since boot); None once it has exited (a zombie)."""
    data = syscalls.read_file(f"/proc/{pid}/stat")
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def boot_id() -> str:
    return syscalls.read_file("/proc/sys/kernel/random/boot_id").decode().strip()


def own_namespaces(nsdir: int | None = None) -> dict:
    """Namespace ids of this process, read through `nsdir` (an fd of its /proc/self/ns)
    when given: pid 1's pivot_root moves the root of every process of the mount namespace,
    so a path opened afterwards may no longer reach the host's /proc."""
    out = {}
    for n in NS_NAMES:
        try:
            out[n] = os.stat(n, dir_fd=nsdir).st_ino if nsdir is not None else _ns_ino(n)
        except OSError:
            pass
    try:
        if nsdir is not None:
            out["pid"] = os.stat("pid_for_children", dir_fd=nsdir).st_ino
        else:
            out["pid"] = _ns_ino("pid_for_children")
    except OSError:
        pass
    return out


def _ns_ino(name: str) -> int:
    return os.stat(f"/proc/self/ns/{name}").st_ino


def seal_imports() -> None:
    """No module can be imported from here on: this process is inside a container's
    mounts, where a host path such as the one of the standard library names the
    container's files. An import that was missed fails instead of running them."""
    sys.meta_path = None
    sys.path_hooks.clear()
    sys.path_importer_cache.clear()


def test_pause(where: str) -> None:
    """The test hook RURIPY_TEST_PAUSE=where: say so on stderr, stop until a SIGCONT."""
    if where == TEST_PAUSE:
        os.write(2, f"ruripy-test-pause {where} pid={os.getpid()}\n".encode())
        os.kill(os.getpid(), 19)  # SIGSTOP


def block_signals() -> None:
    sig.pthread_sigmask(sig.SIG_BLOCK, WAITED)


def parse_db(data: bytes) -> list[list[str]]:
    return [line.split(":") for line in data.decode("utf-8", "replace").splitlines()]


def lookup(
    spec: str | None, passwd: list[list[str]], group: list[list[str]]
) -> tuple[int, int, list[int], str, str]:
    """(uid, gid, groups, home, name) for USER[:GROUP], names or numbers. Without one, uid
    0: root, as /etc/passwd names it, or plain 0 in a rootfs without one (as podman)."""
    user, _, grp = (spec or "0").partition(":")
    uid = gid = None
    home, name, known = "/", user, False
    for e in passwd:
        if len(e) >= 6 and (e[0] == user or (user.isdigit() and e[2] == user)):
            try:
                uid, gid = int(e[2]), int(e[3])
            except ValueError:
                continue
            name, home, known = e[0], e[5] or "/", True
            break
    if uid is None:
        if not user.isdigit():
            raise RuripyError(f"no user {user!r} in the container's /etc/passwd.")
        uid = gid = int(user)
        home = "/root" if uid == 0 else "/"
    if grp:
        gid = None
        for e in group:
            if len(e) >= 3 and (e[0] == grp or (grp.isdigit() and e[2] == grp)):
                try:
                    gid = int(e[2])
                except ValueError:
                    continue
                break
        if gid is None:
            if not grp.isdigit():
                raise RuripyError(f"no group {grp!r} in the container's /etc/group.")
            gid = int(grp)
    groups = [gid]
    if known:
        for e in group:
            if len(e) >= 4 and name in e[3].split(","):
                try:
                    g = int(e[2])
                except ValueError:
                    continue
                if g not in groups:
                    groups.append(g)
    return uid, gid, groups, home, name


def _read_db(path: str) -> list[list[str]]:
    try:
        return parse_db(syscalls.read_file(path))
    except OSError:
        return []


def resolve_user(spec: str | None) -> tuple[int, int, list[int], str]:
    """(uid, gid, groups, home) for USER[:GROUP] from the container's /etc/passwd and group."""
    uid, gid, groups, home, _ = lookup(spec, _read_db("/etc/passwd"), _read_db("/etc/group"))
    return uid, gid, groups, home


def environment(cfg: dict, home: str, user: str) -> dict:
    env = {
        "PATH": DEFAULT_PATH,
        "HOME": home,
        "TERM": cfg.get("term") or "xterm",
        "LANG": "C.UTF-8",
        "USER": user,
        "container": "ruripy",
    }
    for item in cfg.get("env") or ():
        k, _, v = item.partition("=")
        env[k] = v
    return env


def command(argv: list[str] | None) -> list[str]:
    if argv:
        return list(argv)
    for shell in ("/bin/bash", "/bin/sh"):
        if os.access(shell, os.X_OK):
            return [shell, "-l"]
    raise RuripyError("the container has neither /bin/bash nor /bin/sh; give a command to run.")


def test_pause_dumpable() -> None:
    """The test hook RURIPY_TEST_PAUSE=1 (tests/security, P0-E7): the process that is
    about to start the command says whether it is dumpable, then stops until a SIGCONT."""
    if TEST_PAUSE == "1":
        dumpable = syscalls.prctl(syscalls.PR_GET_DUMPABLE)
        os.write(2, f"ruripy-test-pause pid={os.getpid()} dumpable={dumpable}\n".encode())
        os.kill(os.getpid(), 19)  # SIGSTOP


def become(cfg: dict, argv: list[str] | None, flt) -> None:
    """In C3 of a start, inside the container: user, capabilities, workdir, fds, seccomp
    last, exec. No return."""
    test_pause_dumpable()
    user = resolve_user(cfg.get("user"))
    sock = cfg.get("tty_sock")
    if sock is not None:
        master, slave, _ = terminal.open_pty(user[0], 5)
        terminal.send_master(sock, master)
        os.close(master)
        os.close(sock)
        os.login_tty(slave)
    cmd, env = assume(cfg, user, argv)
    if cfg.get("detach_stdio"):
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
    if sock is None and not os.isatty(0):
        # Not on a terminal: a session of its own, so TIOCSTI cannot reach the caller's
        # terminal (runtime.md 6.1).
        try:
            os.setsid()
        except OSError:
            pass
    os.closerange(3, 1 << 16)
    syscalls.reset_signals()
    restrict(cfg, flt)
    try:
        execvpe(cmd, env)
    except OSError as e:
        os._exit(not_run(cmd, e))


def assume(cfg: dict, user: tuple, argv: list[str] | None) -> tuple[list[str], dict]:
    """Inside the container, take `user` (resolve_user) and the profile's capabilities
    and working folder; return the command and its environment."""
    uid, gid, groups, home = user
    keep = cfg["cap_keep"]
    syscalls.drop_bounding(keep)
    try:
        os.setgroups(groups)
    except PermissionError:
        pass  # setgroups is denied with a single-id map: there are no other groups then
    try:
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # for a non-root user the kernel clears the capabilities
    except OSError:
        raise RuripyError(
            f"user {uid}:{gid} is not mapped into this container (only your own id is, "
            "without an /etc/subuid range); run as root inside or add a range."
        ) from None
    if uid == 0:
        syscalls.capset(keep, keep, 0)
    else:
        syscalls.capset(0, 0, 0)
    workdir = cfg.get("workdir")
    if not workdir:
        workdir = home if os.path.isdir(home) else "/"
    try:
        os.chdir(workdir)
        cwd = os.getcwd()
    except OSError as e:
        raise RuripyError(f"cannot use working directory {workdir}: {e.strerror}.") from None
    if not cwd.startswith("/"):
        raise RuripyError(f"working directory {workdir} is outside the container.")
    name = (cfg.get("user") or "root").partition(":")[0]
    return command(argv), environment(cfg, home, name)


def restrict(cfg: dict, flt) -> None:
    """The last steps before the command: no_new_privs as the profile says, then the
    seccomp filter `flt` (which sets no_new_privs itself)."""
    if cfg.get("no_new_privs", True):
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    if flt is not None:
        flt.load()


def not_run(cmd: list[str], e: OSError) -> int:
    """Say why `cmd` could not be started; the status a shell gives for it."""
    if isinstance(e, (FileNotFoundError, NotADirectoryError)):
        say(f"{cmd[0]}: command not found in the container.")
        return 127
    say(f"{cmd[0]}: cannot run it: {e.strerror}.")
    return 126


def execvpe(cmd: list[str], env: dict) -> None:
    """os.execvpe, searching the container's PATH from `env`, without the imports
    os.execvpe makes on first use (nothing may be imported inside the rootfs)."""
    _search(cmd, env, lambda path: os.execve(path, cmd, env))


def spawn(cmd: list[str], env: dict, setsid: bool, tty: str | None) -> int:
    """Start `cmd` from this process, which has taken the container's user, capabilities
    and seccomp filter already (an exec's P), with syscalls.posix_spawn: no copy of a
    Python process is made. The child gets default signals and an empty mask, a session
    of its own when `setsid`, and the terminal `tty` (a path in the container's /dev/pts)
    as its controlling terminal and stdio. Returns its pid.

    A seccomp profile that answers clone3 with EPERM (glibc then does not fall back to
    clone) makes posix_spawn fail; a fork does the same steps then.
    """

    def start(path: str) -> int:
        return syscalls.posix_spawn(path, cmd, env, setsid, tty)

    try:
        return _search(cmd, env, start)
    except PermissionError:
        pass
    pid = os.fork()
    if pid == 0:
        try:
            if setsid:
                os.setsid()
            if tty is not None:
                fd = os.open(tty, os.O_RDWR)
                for n in (0, 1, 2):
                    os.dup2(fd, n)
                os.close(fd)
            syscalls.reset_signals()
            execvpe(cmd, env)
        except OSError as e:
            os._exit(not_run(cmd, e))
    return pid


def _search(cmd: list[str], env: dict, start):
    """start(path) for the first of the container's PATH folders (from `env`) that holds
    cmd[0], as execvp searches; the path as it is when it has a slash."""
    if "/" in cmd[0]:
        return start(cmd[0])
    first_error = last_error = None
    for folder in (env.get("PATH") or DEFAULT_PATH).split(":"):
        try:
            return start(os.path.join(folder or ".", cmd[0]))
        except (FileNotFoundError, NotADirectoryError) as e:
            last_error = e
        except OSError as e:
            last_error = e
            first_error = first_error or e  # as os.execvpe: EACCES and the like win
    raise first_error or last_error or FileNotFoundError(2, "No such file", cmd[0])


def child_main(fn, *args, err_fd: int = -1) -> None:
    """Run child code; never return into the parent's stack (os._exit always).

    A failure is reported as "E<message>" on `err_fd` (the parent raises it) or on stderr.
    """
    msg = ""
    try:
        fn(*args)
    except RuripyError as e:
        msg = str(e)
    except OSError as e:
        msg = oserror_text(e)
    except BaseException as e:
        if os.environ.get("RURIPY_DEBUG") == "1" and sys.meta_path is not None:
            import traceback  # only when debugging, and only on the host side

            traceback.print_exc()
        msg = f"internal error: {type(e).__name__}: {e}"
    try:
        if err_fd >= 0:
            os.write(err_fd, b"E" + msg.encode(errors="replace") + b"\0")
        else:
            say(msg)
    except OSError:
        pass
    os._exit(125)


def oserror_text(e: OSError) -> str:
    where = f" ({e.filename})" if e.filename else ""
    return f"{e.strerror or e}{where}."


def tty_socket(cfg: dict):
    """With --tty: a socket pair; the command's end goes into cfg, ours is returned."""
    if not cfg.get("tty"):
        cfg["tty_sock"] = None
        return None
    global terminal
    import socket  # only for --tty, and on the host side

    from . import terminal  # here, on the host: become() and relay() use it after forks

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    cfg["tty_sock"] = theirs.detach()
    os.set_inheritable(cfg["tty_sock"], False)
    return ours


def relay(sock, child: int, forward) -> int:
    master = terminal.receive_master(sock)
    sock.close()
    if master is None:  # the command's process failed before it made the terminal
        _, status = os.waitpid(child, 0)
        return status_code(status)
    return terminal.relay(master, child, forward)


def wait_forwarding(child: int, forward, status_fd: int = -1) -> int:
    """Wait for `child`, passing kill()-sent signals on with `forward(signo)`.

    Terminal-generated signals reach the command directly when it shares the terminal;
    when it does not (stdin is not a terminal: it runs in its own session), pass them too.
    `status_fd`: a pipe (O_ASYNC, O_NONBLOCK, owned by this process, SIGIO blocked) on
    which `child` writes the command's status as one byte before it exits: the answer
    comes without waiting for the kernel to tear the container's mounts down.
    """
    shared = os.isatty(0)
    waited = WAITED + ((SIGIO,) if status_fd >= 0 else ())
    while True:
        info = sig.sigwaitinfo(waited)
        if info.si_signo == SIGIO:
            try:
                got = os.read(status_fd, 1)
            except BlockingIOError:
                continue
            if got:
                return got[0]
            waited = WAITED  # the child ended without a word (killed): its exit tells
            continue
        if info.si_signo == 17:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid == child:
                return status_code(status)
            continue
        if info.si_code in SI_USER_CODES or not shared:
            forward(info.si_signo)
