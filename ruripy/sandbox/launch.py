"""Start a container and join a running one: the process tree, the root, hardening, exec.

Process tree of a start (runtime.md section 2)::

    P  (the CLI: maps ids, writes state, forwards signals, waits)
    └─ C1 (new user namespace; unshares mount, pid, uts, ipc [, net]; waits)
       └─ C2 = pid 1 (builds the root, pivots, then reaps; forwards signals)
          └─ C3 (becomes the user, drops capabilities, seccomp last, execs the command)

A join (`exec`) is P -> C1 (setns through a pidfd) -> C3. Everything a child needs is
imported and loaded before the first fork: nothing is imported once inside a rootfs.
Standard library only.
"""

import _signal as sig
import os
import warnings  # noqa: F401 (os.execvpe imports it on first use: inside the rootfs it is gone)

from ..errors import RuripyError
from . import binfmt, caps, cgroups, inroot, mounts, proot, seccomp, syscalls, terminal, users
from .idmap import caller_idmap, userns_unavailable_reason

# Signals P and pid 1 take over and pass on (runtime.md 6.3); job-control ones stay default.
FORWARDED = (1, 2, 3, 10, 12, 14, 15, 28)  # HUP INT QUIT USR1 USR2 ALRM TERM WINCH
WAITED = (17, *FORWARDED)  # plus CHLD
SI_USER_CODES = (0, -1, -6)  # SI_USER, SI_QUEUE, SI_TKILL: sent with kill(), not the terminal
NS_NAMES = ("user", "mnt", "pid", "uts", "ipc", "net")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Test hook (tests/security, P0-E7): C3 reports whether it is dumpable, then stops itself
# inside the container before anything else, until a SIGCONT.
TEST_PAUSE = os.environ.get("RURIPY_TEST_PAUSE") == "1"


def _say(msg: str) -> None:
    try:
        os.write(2, f"ruripy: {msg}\n".encode(errors="replace"))
    except OSError:
        pass


def _status_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _read_all(fd: int) -> bytes:
    out = []
    while True:
        try:
            b = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not b:
            return b"".join(out)
        out.append(b)


def _starttime(pid: int) -> int | None:
    """Start time of `pid` (clock ticks since boot); None once it has exited (a zombie)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def _own_namespaces(nsdir: int | None = None) -> dict:
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


def _block_signals() -> None:
    sig.pthread_sigmask(sig.SIG_BLOCK, WAITED)


# -- the user and the command, resolved inside the container ----------------------------


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path, "rb") as f:
            return users.parse_db(f.read(1 << 20))
    except OSError:
        return []


def resolve_user(spec: str | None) -> tuple[int, int, list[int], str]:
    """(uid, gid, groups, home) for USER[:GROUP] from the container's /etc/passwd and group."""
    uid, gid, groups, home, _ = users.lookup(spec, _read_db("/etc/passwd"), _read_db("/etc/group"))
    return uid, gid, groups, home


def _environment(cfg: dict, home: str, user: str) -> dict:
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


def _command(argv: list[str] | None) -> list[str]:
    if argv:
        return list(argv)
    for shell in ("/bin/bash", "/bin/sh"):
        if os.access(shell, os.X_OK):
            return [shell, "-l"]
    raise RuripyError("the container has neither /bin/bash nor /bin/sh; give a command to run.")


def _become(cfg: dict, argv: list[str] | None, flt) -> None:
    """In C3, inside the container: user, capabilities, workdir, fds, seccomp, exec. No return."""
    if TEST_PAUSE:
        dumpable = syscalls.prctl(syscalls.PR_GET_DUMPABLE)
        os.write(2, f"ruripy-test-pause pid={os.getpid()} dumpable={dumpable}\n".encode())
        os.kill(os.getpid(), 19)  # SIGSTOP
    uid, gid, groups, home = resolve_user(cfg.get("user"))
    sock = cfg.get("tty_sock")
    if sock is not None:
        master, slave = terminal.open_pty(uid, 5)
        terminal.send_master(sock, master)
        os.close(master)
        os.close(sock)
        os.login_tty(slave)
    keep = cfg["cap_keep"]
    caps.drop_bounding(keep)
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
        caps.apply(keep)
    else:
        caps.apply(0)
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
    user = cfg.get("user") or "root"
    env = _environment(cfg, home, user.partition(":")[0])
    cmd = _command(argv)
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
    if cfg.get("no_new_privs", True):
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    syscalls.reset_signals()
    if flt is not None:
        flt.load()
    try:
        os.execvpe(cmd[0], cmd, env)
    except FileNotFoundError:
        _say(f"{cmd[0]}: command not found in the container.")
        os._exit(127)
    except NotADirectoryError:
        _say(f"{cmd[0]}: command not found in the container.")
        os._exit(127)
    except OSError as e:
        _say(f"{cmd[0]}: cannot run it: {e.strerror}.")
        os._exit(126)


def _child_main(fn, *args, err_fd: int = -1) -> None:
    """Run child code; never return into the parent's stack (os._exit always).

    A failure is reported as "E<message>" on `err_fd` (the parent raises it) or on stderr.
    """
    msg = ""
    try:
        fn(*args)
    except RuripyError as e:
        msg = str(e)
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        msg = f"{e.strerror or e}{where}."
    except BaseException as e:
        if os.environ.get("RURIPY_DEBUG") == "1":
            import traceback  # only when debugging; never on the normal path

            traceback.print_exc()
        msg = f"internal error: {type(e).__name__}: {e}"
    try:
        if err_fd >= 0:
            os.write(err_fd, b"E" + msg.encode(errors="replace") + b"\0")
        else:
            _say(msg)
    except OSError:
        pass
    os._exit(125)


# -- pid 1 -----------------------------------------------------------------------------


def _reaper(main_pid: int | None, shared_tty: bool) -> None:
    """Reap every child; pass kill()-sent signals on; exit with the command's status.

    SIGTERM (ruripy stop, or a kill of the caller) goes to every process of the container,
    and pid 1 then stays until they have all ended (stop's SIGKILL cuts that short).
    """
    stopping = False
    while True:
        info = sig.sigwaitinfo(WAITED)
        if info.si_signo == 17:
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    if main_pid is None:
                        break
                    os._exit(0)
                if pid == 0:
                    break
                if pid == main_pid:
                    if stopping:
                        _drain()
                    os._exit(_status_code(status))
            continue
        if main_pid is None:
            if info.si_signo in (15, 2, 1):
                _stop_all(info.si_signo)
            continue
        if info.si_code in SI_USER_CODES or not shared_tty:
            stopping = stopping or info.si_signo == 15
            try:
                os.kill(-1 if info.si_signo == 15 else main_pid, info.si_signo)
            except ProcessLookupError:
                pass


def _drain() -> None:
    """Reap children until pid 1 is alone in the container's pid namespace (its /proc)."""
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        try:
            if not any(n.isdigit() and n != "1" for n in os.listdir("/proc")):
                return
        except OSError:
            return
        sig.sigtimedwait((17,), 0.05)


def _stop_all(signo: int) -> None:
    """Detached pid 1 asked to stop: signal everyone, wait for them all, then exit."""
    try:
        os.kill(-1, signo)
    except ProcessLookupError:
        pass
    _drain()
    os._exit(128 + signo)


def _pid1(cfg: dict, argv, info_w: int, flt, host) -> None:
    # Foreign arch, rootless: qemu registered in this user namespace's own binfmt_misc
    # while the host's files are still in view; pid 1 keeps the mount fd (binfmt.py).
    keep = (
        binfmt.register_private(cfg["binfmt"], cfg.get("binfmt_arch", ""))
        if cfg.get("binfmt")
        else -1
    )
    mounts.build_root(cfg, host)
    if cfg.get("hostname"):
        syscalls.sethostname(cfg["hostname"])
    if cfg.get("net") == "none":
        syscalls.loopback_up()
    host.close()
    detach = cfg.get("detach")
    if detach:
        _block_signals()  # the reaper takes SIGCHLD and SIGTERM with sigwaitinfo
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
    main_pid = None
    if not detach:
        main_pid = os.fork()
        if main_pid == 0:
            os.close(info_w)
            _child_main(_become, cfg, argv, flt)
    if cfg["rootless"]:
        # The caller joins through a pidfd, which needs ptrace read access to pid 1.
        # Safe: pid 1 holds no host fds now, and it keeps every capability of the user
        # namespace, so container processes (fewer capabilities) still cannot ptrace it.
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 1)
    os.write(info_w, b"R\0")
    os.close(info_w)
    os.closerange(3, keep if keep > 0 else 1 << 16)
    if keep > 0:
        os.closerange(keep + 1, 1 << 16)
    _reaper(main_pid, shared_tty=os.isatty(0))


# -- starting ----------------------------------------------------------------------------


def start(cfg: dict, argv: list[str] | None, on_ready) -> int:
    """Start a container; call `on_ready(state)` once its root is built; return the status.

    `cfg` is the launch plan (plain data): rootfs, overlay lower/upper/work, rootless, user,
    workdir, env, hostname, net, read_only, binds, cap_keep, seccomp, deny_syscall, unmask,
    no_new_privs, tty, detach. With detach the init stays up and this returns 0 at once.
    """
    rootless = cfg["rootless"]
    idmap = caller_idmap() if rootless else None
    if idmap and idmap.warning():
        _say(idmap.warning()[len("ruripy: ") :])
    host = mounts.HostResources(cfg)  # opens and checks host files before any namespace
    flt = seccomp.prepare(
        cfg.get("seccomp") or "default", cfg.get("deny_syscall") or (), caps=cfg.get("cap_keep")
    )
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    info_r, info_w = os.pipe2(os.O_CLOEXEC)
    tty_parent = _tty_socket(cfg)
    if not cfg.get("detach"):
        _block_signals()
    c1 = os.fork()
    if c1 == 0:
        os.close(ready_r)
        os.close(go_w)
        os.close(info_r)
        for fd in cfg.get("close_fds", ()):
            os.close(fd)
        _child_main(_c1, cfg, argv, idmap, ready_w, go_r, info_w, flt, host, err_fd=info_w)
    os.close(ready_w)
    os.close(go_r)
    os.close(info_w)
    host.close()
    if tty_parent is not None:
        os.close(cfg["tty_sock"])
    try:
        state = os.read(ready_r, 1)
        if state == b"U":
            raise RuripyError(userns_unavailable_reason())
        if state != b"1":
            raise RuripyError("the container could not start (see the message above).")
        if idmap:
            idmap.apply(c1)
        cgroups.attach(cfg.get("cgroups"), c1)  # before anything of the container runs
        os.write(go_w, b"1")
    except BaseException:
        try:
            os.kill(c1, 9)
        except ProcessLookupError:
            pass
        os.waitpid(c1, 0)
        raise
    finally:
        os.close(ready_r)
        os.close(go_w)
    info = _read_all(info_r).decode(errors="replace")
    os.close(info_r)
    parts = info.split("\0")  # records end with NUL: messages may hold ";"
    errors = [p[1:] for p in parts if p.startswith("E")]
    started = [p[1:] for p in parts if p.startswith("P")]
    if errors or not started or "R" not in parts:
        os.waitpid(c1, 0)
        if not cfg.get("detach"):
            sig.pthread_sigmask(sig.SIG_UNBLOCK, WAITED)
        raise RuripyError(errors[0] if errors else "the container could not start.")
    fields = started[0].split(",")
    init_pid = int(fields[0])
    ns = {}
    for f in fields[1:]:
        k, _, v = f.partition("=")
        ns[k] = int(v)
    try:
        pidfd = os.pidfd_open(init_pid)
        starttime = _starttime(init_pid)
    except OSError:  # a short command already ended, and pid 1 with it
        pidfd, starttime = -1, None
    if starttime is None:  # nothing left to record (or join)
        if pidfd >= 0:
            os.close(pidfd)
        pidfd = -1
    else:
        on_ready(
            {
                "pid": init_pid,
                "starttime": starttime,
                "boot_id": boot_id(),
                "ns": ns,
                "rootless": rootless,
                "net": cfg.get("net") or "host",
                "exec": {k: cfg.get(k) for k in EXEC_KEYS},
            }
        )
    if cfg.get("detach"):
        os.waitpid(c1, 0)
        if pidfd < 0:  # its init is already gone: say so rather than report a start
            raise RuripyError("the container stopped right after it started; try 'ruripy run'.")
        os.close(pidfd)
        return 0

    def forward(signo: int) -> None:
        try:
            sig.pidfd_send_signal(pidfd, signo)
        except (ProcessLookupError, OSError):
            pass

    try:
        if tty_parent is not None:
            return _relay(tty_parent, c1, forward)
        return _wait_forwarding(c1, forward)
    finally:
        if pidfd >= 0:
            os.close(pidfd)


EXEC_KEYS = ("user", "workdir", "env", "cap_keep", "seccomp", "deny_syscall", "no_new_privs")


def _c1(cfg, argv, idmap, ready_w, go_r, info_w, flt, host) -> None:
    if not cfg.get("detach"):
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 9)
    if idmap:
        try:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
        except OSError:
            os.write(ready_w, b"U")
            os._exit(125)
        os.write(ready_w, b"1")
        if os.read(go_r, 1) != b"1":
            os._exit(125)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        if idmap.ranges:
            os.setgroups([])
    else:
        os.write(ready_w, b"1")
        os.read(go_r, 1)
    os.close(ready_w)
    os.close(go_r)
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    flags = (
        syscalls.CLONE_NEWNS | syscalls.CLONE_NEWPID | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
    )
    if cfg.get("net") == "none":
        flags |= syscalls.CLONE_NEWNET
    syscalls.unshare(flags)
    nsdir = os.open("/proc/self/ns", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    c2 = os.fork()
    if c2 == 0:
        os.close(nsdir)
        if not cfg.get("detach"):
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 9)
        _child_main(_pid1, cfg, argv, info_w, flt, host, err_fd=info_w)
    host.close()
    if cfg.get("tty_sock") is not None:
        os.close(cfg["tty_sock"])
    ns = _own_namespaces(nsdir)  # pid_for_children is readable only once a child exists
    os.close(nsdir)
    if not {"mnt", "pid", "uts", "ipc"} <= ns.keys():
        os.kill(c2, 9)
        raise RuripyError("could not read the namespaces of the new container.")
    nsinfo = "".join(f",{k}={v}" for k, v in ns.items())
    os.write(info_w, f"P{c2}{nsinfo}\0".encode())
    os.close(info_w)
    if cfg.get("detach"):
        os._exit(0)
    while True:
        try:
            _, status = os.waitpid(c2, 0)
            break
        except InterruptedError:
            continue
    os._exit(_status_code(status))


def _tty_socket(cfg: dict):
    """With --tty: a socket pair; the command's end goes into cfg, ours is returned."""
    if not cfg.get("tty"):
        cfg["tty_sock"] = None
        return None
    import socket  # only for --tty, and on the host side

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    cfg["tty_sock"] = theirs.detach()
    os.set_inheritable(cfg["tty_sock"], False)
    return ours


def _relay(sock, child: int, forward) -> int:
    master = terminal.receive_master(sock)
    sock.close()
    if master is None:  # the command's process failed before it made the terminal
        _, status = os.waitpid(child, 0)
        return _status_code(status)
    return terminal.relay(master, child, forward)


def _wait_forwarding(child: int, forward) -> int:
    """Wait for `child`, passing kill()-sent signals on with `forward(signo)`.

    Terminal-generated signals reach the command directly when it shares the terminal;
    when it does not (stdin is not a terminal: it runs in its own session), pass them too.
    """
    shared = os.isatty(0)
    while True:
        info = sig.sigwaitinfo(WAITED)
        if info.si_signo == 17:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid == child:
                return _status_code(status)
            continue
        if info.si_code in SI_USER_CODES or not shared:
            forward(info.si_signo)


# -- joining -----------------------------------------------------------------------------


def check_alive(state: dict) -> int | None:
    """A pidfd for the state's init if it is still that very process, else None."""
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 1:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        if (
            state.get("boot_id") != boot_id()
            or _starttime(pid) != state.get("starttime")
            or not _in_container_namespaces(pid, state)
        ):
            os.close(pidfd)
            return None
        sig.pidfd_send_signal(pidfd, 0)  # still the process the checks were about
    except OSError:
        os.close(pidfd)
        return None
    return pidfd


def _in_container_namespaces(pid: int, state: dict) -> bool:
    """`pid` is in the namespaces recorded at start, and they are not the caller's own.

    A recycled pid, or a state file naming an ordinary host process, fails here, before
    anything joins it (P0-N3).
    """
    if state.get("backend") == "proot":  # no namespaces: it must be that proot process
        return proot.is_session(pid, state)
    ns = state.get("ns")
    if not isinstance(ns, dict):
        return False
    names = ("mnt", "pid", "uts", "ipc") + (("user",) if state.get("rootless") else ())
    for n in names:
        want = ns.get(n)
        if not isinstance(want, int):
            return False
        if os.stat(f"/proc/{pid}/ns/{n}").st_ino != want:
            return False
        if os.stat(f"/proc/self/ns/{n}").st_ino == want:
            return False
    return True


def join(state: dict, pidfd: int, cfg: dict, argv: list[str]) -> int:
    """Run `argv` in the running container `state` describes (pidfd pins its init)."""
    flt = seccomp.prepare(
        cfg.get("seccomp") or "default", cfg.get("deny_syscall") or (), caps=cfg.get("cap_keep")
    )
    flags = (
        syscalls.CLONE_NEWNS | syscalls.CLONE_NEWPID | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
    )
    if state.get("rootless"):
        flags |= syscalls.CLONE_NEWUSER
    if state.get("net") == "none":
        flags |= syscalls.CLONE_NEWNET
    tty_parent = _tty_socket(cfg)
    _block_signals()
    c1 = os.fork()
    if c1 == 0:
        for fd in cfg.get("close_fds", ()):
            os.close(fd)
        _child_main(_join_child, state, pidfd, flags, cfg, argv, flt)
    os.close(pidfd)

    def forward(signo: int) -> None:
        try:
            os.kill(c1, signo)  # our own child: its pid cannot be reused before we reap it
        except ProcessLookupError:
            pass

    if tty_parent is not None:
        os.close(cfg["tty_sock"])
        return _relay(tty_parent, c1, forward)
    return _wait_forwarding(c1, forward)


def _join_child(state, pidfd, flags, cfg, argv, flt) -> None:
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 9)
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    try:
        syscalls.setns(pidfd, flags)
    except OSError as e:
        if e.errno == 3:  # ESRCH: the init is gone
            raise RuripyError("the container is not running (its init has exited).") from None
        raise
    os.close(pidfd)  # the command's process must not inherit it (P0-E5)
    if state.get("rootless"):
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        os.setgroups([])
    os.chdir("/")
    c3 = os.fork()
    if c3 == 0:
        _child_main(_joined, state, cfg, argv, flt)
    if cfg.get("tty_sock") is not None:
        os.close(cfg["tty_sock"])

    def forward(signo: int) -> None:
        try:
            os.kill(c3, signo)
        except ProcessLookupError:
            pass

    os._exit(_wait_forwarding(c3, forward))


def _joined(state, cfg, argv, flt) -> None:
    """C3 of a join, now inside the container's pid namespace: verify, then become."""
    mine = _own_namespaces()
    for k, v in (state.get("ns") or {}).items():
        if k in mine and k != "pid" and mine[k] != v:
            raise RuripyError("the container is not running (its namespaces changed).")
    if "pid" in (state.get("ns") or {}):
        try:
            if os.stat("/proc/self/ns/pid").st_ino != state["ns"]["pid"]:
                raise RuripyError("the container is not running (its namespaces changed).")
        except OSError:
            raise RuripyError("the container is not running (no pid namespace).") from None
    _become(cfg, argv, flt)


def stop(state: dict, pidfd: int, timeout: float) -> None:
    """SIGTERM the container's init (which passes it on), then SIGKILL after `timeout`."""
    import select  # small C module; stop is not on the run path

    try:
        sig.pidfd_send_signal(pidfd, 15)
    except ProcessLookupError:
        return
    if not select.select([pidfd], [], [], timeout)[0]:
        try:
            sig.pidfd_send_signal(pidfd, 9)
        except ProcessLookupError:
            return
        select.select([pidfd], [], [], 10)


__all__ = ["start", "join", "stop", "check_alive", "resolve_user", "inroot"]
