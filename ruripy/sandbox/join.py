"""Joining a running container (`ruripy exec`): P -> C1 (setns through a pidfd) -> C3.

The init is pinned by a pidfd and checked (boot id, start time, namespace identity) before
anything joins it, so a recycled pid is never entered (P0-N3). Nothing new is mounted.
Kept apart from launch.py so the exec path imports only what a join needs.
Standard library only.
"""

import _signal as sig
import os

from ..errors import RuripyError
from . import process, seccomp_cache, syscalls


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
            state.get("boot_id") != process.boot_id()
            or process.starttime(pid) != state.get("starttime")
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
        from . import proot

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
    flt = seccomp_cache.prepare(
        cfg.get("seccomp") or "default",
        cfg.get("deny_syscall") or (),
        caps=cfg.get("cap_keep"),
        cache=cfg.get("seccomp_cache"),
    )
    flags = (
        syscalls.CLONE_NEWNS | syscalls.CLONE_NEWPID | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
    )
    if state.get("rootless"):
        flags |= syscalls.CLONE_NEWUSER
    if state.get("net") == "none":
        flags |= syscalls.CLONE_NEWNET
    tty_parent = process.tty_socket(cfg)
    process.block_signals()
    c1 = os.fork()
    if c1 == 0:
        for fd in cfg.get("close_fds", ()):
            os.close(fd)
        process.child_main(_join_child, state, pidfd, flags, cfg, argv, flt)
    os.close(pidfd)

    def forward(signo: int) -> None:
        try:
            os.kill(c1, signo)  # our own child: its pid cannot be reused before we reap it
        except ProcessLookupError:
            pass

    if tty_parent is not None:
        os.close(cfg["tty_sock"])
        return process.relay(tty_parent, c1, forward)
    return process.wait_forwarding(c1, forward)


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
        process.child_main(_joined, state, cfg, argv, flt)
    if cfg.get("tty_sock") is not None:
        os.close(cfg["tty_sock"])

    def forward(signo: int) -> None:
        try:
            os.kill(c3, signo)
        except ProcessLookupError:
            pass

    os._exit(process.wait_forwarding(c3, forward))


def _joined(state, cfg, argv, flt) -> None:
    """C3 of a join, now inside the container's pid namespace: verify, then become."""
    mine = process.own_namespaces()
    for k, v in (state.get("ns") or {}).items():
        if k in mine and k != "pid" and mine[k] != v:
            raise RuripyError("the container is not running (its namespaces changed).")
    if "pid" in (state.get("ns") or {}):
        try:
            if os.stat("/proc/self/ns/pid").st_ino != state["ns"]["pid"]:
                raise RuripyError("the container is not running (its namespaces changed).")
        except OSError:
            raise RuripyError("the container is not running (no pid namespace).") from None
    process.become(cfg, argv, flt)


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
