"""Starting a container: the process tree, the root, hardening, exec.

Process tree of a start (runtime.md section 2)::

    P  (the CLI: maps ids, writes state, forwards signals, waits)
    └─ C2 = pid 1 (cloned into new user, mount, pid, uts, ipc [, net] namespaces; waits
       │           for the id maps, builds the root, pivots, then reaps; forwards signals)
       └─ C3 (becomes the user, drops capabilities, seccomp last, execs the command)

Joining a running container is in running.py; C3 is process.become. Everything a child needs is
imported and loaded before the first fork: nothing is imported once inside a rootfs.
Standard library only.
"""

import _signal as sig
import fcntl
import os

from ..errors import RuripyError
from . import binfmt, mounts, process, seccomp_cache, syscalls
from .idmap import caller_idmap, userns_unavailable_reason

EXEC_KEYS = ("user", "workdir", "env", "cap_keep", "seccomp", "deny_syscall", "no_new_privs")


def _reaper(main_pid: int | None, shared_tty: bool, status_fd: int = -1) -> None:
    """Reap every child; pass kill()-sent signals on; exit with the command's status.

    SIGTERM (ruripy stop, or a kill of the caller) goes to every process of the container,
    and pid 1 then stays until they have all ended (stop's SIGKILL cuts that short). When
    the command ends, so does every other process of the container (as the kernel would
    see to at pid 1's exit); then the status goes to the caller on `status_fd` before pid
    1's exit tears the container's mounts down.
    """
    stopping = False
    while True:
        info = sig.sigwaitinfo(process.WAITED)
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
                    code = process.status_code(status)
                    if not stopping:
                        try:
                            os.kill(-1, 9)
                        except ProcessLookupError:
                            pass
                    _drain()
                    if status_fd >= 0:
                        try:
                            os.write(status_fd, bytes((code,)))
                        except OSError:
                            pass
                    os._exit(code)
            continue
        if main_pid is None:
            if info.si_signo in (15, 2, 1):
                _stop_all(info.si_signo)
            continue
        if info.si_code in process.SI_USER_CODES or not shared_tty:
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


def _pid1(cfg: dict, argv, idmap, go_r: int, info_w: int, flt, host) -> None:
    """pid 1 of the new namespaces: wait for the id maps, build the root, start the
    command (C3), tell the caller, then reap."""
    if not cfg.get("detach"):
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 9)
    _mapped(go_r, idmap)
    os.close(go_r)
    ns = process.own_namespaces()  # the host's /proc is still in view here
    if not {"mnt", "pid", "uts", "ipc"} <= ns.keys():
        raise RuripyError("could not read the namespaces of the new container.")
    # Foreign arch, rootless: qemu registered in this user namespace's own binfmt_misc
    # while the host's files are still in view; pid 1 keeps the mount fd (binfmt.py).
    keep = (
        binfmt.register_private(cfg["binfmt"], cfg.get("binfmt_arch", ""))
        if cfg.get("binfmt")
        else -1
    )
    mounts.build_root(cfg, host)
    process.seal_imports()  # inside the new root now: nothing may be imported (C3 too)
    if cfg.get("hostname"):
        syscalls.sethostname(cfg["hostname"])
    if cfg.get("net") == "none":
        syscalls.loopback_up()
    host.close()
    detach = cfg.get("detach")
    if detach:
        process.block_signals()  # the reaper takes SIGCHLD and SIGTERM with sigwaitinfo
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
            process.child_main(process.become, cfg, argv, flt)
    if cfg["rootless"]:
        # The caller joins through a pidfd, which needs ptrace read access to pid 1.
        # Safe: pid 1 holds no host fds now, and it keeps every capability of the user
        # namespace, so container processes (fewer capabilities) still cannot ptrace it.
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 1)
    nsinfo = ",".join(f"{k}={v}" for k, v in ns.items())
    os.write(info_w, f"N{nsinfo}\0R\0".encode())
    os.close(info_w)
    status_fd = cfg.get("status_fd", -1)
    kept = sorted(fd for fd in (keep, status_fd) if fd > 2)
    low = 3
    for fd in kept:  # close every other fd
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
    _reaper(main_pid, os.isatty(0), status_fd)


def start(cfg: dict, argv: list[str] | None, on_ready) -> int:
    """Start a container; call `on_ready(state)` once its root is built; return the status.

    `cfg` is the launch plan (plain data): rootfs, overlay lower/upper/work, rootless, user,
    workdir, env, hostname, net, read_only, binds, cap_keep, seccomp, deny_syscall, unmask,
    no_new_privs, tty, detach. With detach the init stays up and this returns 0 at once.
    """
    rootless = cfg["rootless"]
    idmap = caller_idmap() if rootless else None
    if idmap and idmap.warning():
        process.say(idmap.warning()[len("ruripy: ") :])
    host = mounts.HostResources(cfg)  # opens and checks host files before any namespace
    flt = seccomp_cache.for_plan(cfg)
    flags = syscalls.CONTAINER_NAMESPACES
    if cfg.get("net") == "none":
        flags |= syscalls.CLONE_NEWNET
    if idmap:
        flags |= syscalls.CLONE_NEWUSER
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    info_r, info_w = os.pipe2(os.O_CLOEXEC)
    tty_parent = process.tty_socket(cfg)
    status_r = -1
    if not cfg.get("detach"):
        process.block_signals()
        status_r, cfg["status_fd"] = _status_pipe()
    try:
        pid1 = syscalls.clone(flags)
    except OSError as e:
        for fd in (go_r, go_w, info_r, info_w, status_r, cfg.pop("status_fd", -1)):
            if fd >= 0:
                os.close(fd)
        host.close()
        if not cfg.get("detach"):  # SIGIO stays blocked: one may be pending, and is harmless
            sig.pthread_sigmask(sig.SIG_UNBLOCK, process.WAITED)
        if idmap:
            raise RuripyError(userns_unavailable_reason()) from None
        raise RuripyError(f"cannot make the container's namespaces: {e.strerror}.") from None
    if pid1 == 0:
        os.close(go_w)
        os.close(info_r)
        if status_r >= 0:
            os.close(status_r)
        if tty_parent is not None:
            tty_parent.close()
        for fd in cfg.get("close_fds", ()):
            os.close(fd)
        process.child_main(_pid1, cfg, argv, idmap, go_r, info_w, flt, host, err_fd=info_w)
    os.close(go_r)
    os.close(info_w)
    if status_r >= 0:
        os.close(cfg["status_fd"])  # pid 1 holds the only write end (C3 closes its copy)
    host.close()
    if tty_parent is not None:
        os.close(cfg["tty_sock"])
    try:
        if idmap:
            idmap.apply(pid1)
        if cfg.get("cgroups"):
            from . import cgroups  # host side; only for containers with limits

            cgroups.attach(cfg["cgroups"], pid1)  # before anything of the container runs
        os.write(go_w, b"1")
    except BaseException:
        try:
            os.kill(pid1, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid1, 0)
        if status_r >= 0:
            os.close(status_r)
        raise
    finally:
        os.close(go_w)
    info = process.read_all(info_r).decode(errors="replace")
    os.close(info_r)
    parts = info.split("\0")  # records end with NUL: messages may hold ";"
    errors = [p[1:] for p in parts if p.startswith("E")]
    named = [p[1:] for p in parts if p.startswith("N")]
    if errors or not named or "R" not in parts:
        if status_r >= 0:
            os.close(status_r)
        os.waitpid(pid1, 0)  # it has failed, or died
        if not cfg.get("detach"):
            sig.pthread_sigmask(sig.SIG_UNBLOCK, process.WAITED)
        raise RuripyError(errors[0] if errors else "the container could not start.")
    ns = {}
    for f in named[0].split(","):
        k, _, v = f.partition("=")
        ns[k] = int(v)
    try:
        pidfd = os.pidfd_open(pid1)
        starttime = process.starttime(pid1)
    except OSError:  # a short command already ended, and pid 1 with it
        pidfd, starttime = -1, None
    if starttime is None:  # nothing left to record (or join)
        if pidfd >= 0:
            os.close(pidfd)
        pidfd = -1
    else:
        on_ready(
            {
                "pid": pid1,
                "starttime": starttime,
                "boot_id": process.boot_id(),
                "ns": ns,
                "rootless": rootless,
                "net": cfg.get("net") or "host",
                "exec": {k: cfg.get(k) for k in EXEC_KEYS},
            }
        )
    if cfg.get("detach"):
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
            return process.relay(tty_parent, pid1, forward)
        return process.wait_forwarding(pid1, forward, status_r)
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        if status_r >= 0:
            os.close(status_r)


def _status_pipe() -> tuple[int, int]:
    """(read end for P, write end for pid 1) of the pipe pid 1 writes the command's status
    on once every process of the container has ended. P hears of it by SIGIO (blocked here,
    taken with sigwaitinfo) and answers at once, while pid 1's exit still tears the
    container's mounts down."""
    r, w = os.pipe2(os.O_CLOEXEC)
    fcntl.fcntl(r, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(r, fcntl.F_SETFL, os.O_NONBLOCK | os.O_ASYNC)
    sig.pthread_sigmask(sig.SIG_BLOCK, (process.SIGIO,))
    return r, w


def _mapped(go_r: int, idmap) -> None:
    """Wait for the caller's go (the id maps are written), then take root of the user
    namespace and stop being dumpable: nothing of the container may trace this process."""
    if os.read(go_r, 1) != b"1":
        os._exit(125)
    if idmap:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        if idmap.ranges:
            os.setgroups([])
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
