"""Joining a running container (`ruripy exec`): P (setns through a pidfd) -> the command.

The init is pinned by a pidfd and checked (running.check_alive: boot id, start time,
namespace identity) before anything joins it, so a recycled pid is never entered (P0-N3).
Nothing new is mounted.
Kept apart from launch.py so the exec path imports only what a join needs.
Standard library only.
"""

import _signal as sig
import os

from ..errors import RuripyError
from . import process, seccomp_cache, syscalls


class Gone(RuripyError):
    """The container's init ended before anything joined it: nothing has changed."""


def join(state: dict, pidfd: int, cfg: dict, argv: list[str]) -> int:
    """Run `argv` in the running container `state` describes (pidfd pins its init).

    This process joins the container's namespaces itself, takes the profile's user,
    capabilities and seccomp filter, and starts the command with posix_spawn (a pid
    namespace is entered by the children of who joins it). From the setns on it is inside
    the container's mounts: nothing may be imported or opened by a host path after it, so
    everything it needs is loaded before, and imports are shut off.
    """
    flt = seccomp_cache.for_plan(cfg)
    flags = syscalls.CONTAINER_NAMESPACES
    if state.get("rootless"):
        flags |= syscalls.CLONE_NEWUSER
    if state.get("net") == "none":
        flags |= syscalls.CLONE_NEWNET
    terminal = None
    if cfg.get("tty"):
        from . import terminal  # here, on the host: the relay runs inside
    nsdir = os.open("/proc/self/ns", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    process.block_signals()
    # Nothing of the container may trace this process once it is in there (P0-E7). It is
    # not in the container's pid namespace either: no process of the container sees it.
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    process.test_pause("join")
    try:
        syscalls.setns(pidfd, flags)  # all of them or none
    except OSError as e:
        if e.errno == 3:  # ESRCH: the init is gone
            raise Gone("the container is not running (its init has exited).") from None
        raise
    finally:
        os.close(pidfd)
    process.seal_imports()
    try:
        _check_joined(state, nsdir)
    finally:
        os.close(nsdir)
    if state.get("rootless"):
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        os.setgroups([])
    os.chdir("/")
    try:
        child, master = _start(cfg, argv, flt, terminal)
    except OSError as e:
        raise RuripyError(process.oserror_text(e)) from None
    if child < 0:
        return -child

    def forward(signo: int) -> None:
        try:
            os.kill(child, signo)  # our own child: its pid cannot be reused before we reap it
        except ProcessLookupError:
            pass

    if master is not None:
        return terminal.relay(master, child, forward)
    return process.wait_forwarding(child, forward)


def _start(cfg: dict, argv: list[str], flt, terminal) -> tuple[int, int | None]:
    """In the container: take the user, capabilities, working folder and seccomp filter
    (the command inherits them), then start the command. (pid, terminal master), or
    (-status, None) when it could not start."""
    process.test_pause_dumpable()
    user = process.resolve_user(cfg.get("user"))
    os.closerange(3, 1 << 16)  # what the caller left open (P0-E5); ours are close-on-exec
    master = slave = tty = None
    if terminal is not None:
        master, slave, tty = terminal.open_pty(user[0], 5)
        os.set_inheritable(slave, False)  # held until the command has opened it by path
    try:
        cmd, env = process.assume(cfg, user, argv)
        if cfg.get("no_new_privs", True):
            syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        if flt is not None:
            flt.load()
        try:
            child = process.spawn(cmd, env, tty is not None or not os.isatty(0), tty)
        except OSError as e:
            if e.errno == 12:  # ENOMEM: the pid namespace lost its init after the setns
                raise RuripyError(f"the container is not running ({e.strerror}).") from None
            return -process.not_run(cmd, e), None
    finally:
        if slave is not None:
            os.close(slave)
    return child, master


def _check_joined(state: dict, nsdir: int) -> None:
    """The namespaces joined are the ones recorded at start (read through `nsdir`, this
    process's /proc/self/ns opened before: the container's /proc has no entry for it)."""
    mine = process.own_namespaces(nsdir)
    for k, v in (state.get("ns") or {}).items():
        if mine.get(k) != v:
            raise RuripyError("the container is not running (its namespaces changed).")


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
