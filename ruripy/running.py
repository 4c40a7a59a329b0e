"""Running containers: their state, whether one still runs, joining one (`ruripy exec`,
and `run` of a running container) and stopping it.

The state of a running container (init pid, its start time, boot id, namespace inodes, the
settings exec re-applies) lives in the store's state/ folder, never in a rootfs. The init
is pinned by a pidfd and checked (boot id, start time, namespace identity) before
anything joins it, so a recycled pid is never entered (P0-N3); nothing new is mounted.
This is the whole `ruripy exec` path: it imports no module for starting a container
(lifecycle.py does that), so exec loads as little as it can. Standard library only.
"""

import _signal as signal
import os

from .errors import RuripyError
from .sandbox import process, seccomp_cache, syscalls
from .store import Store, check_name, read_record


def find(store: Store, name: str, locked: bool = False) -> tuple[dict, int] | None:
    """(state, pidfd) of a running container, else None; stale state is removed.

    `locked`: the caller holds the container's lock. Without it the stale state is removed
    only when the lock is free (a start holding it may be writing a fresh state).
    """
    path = store.state_path(name)
    if not os.path.lexists(path):
        return None
    state = _read_state(path)
    pidfd = check_alive(state)
    if pidfd is not None:
        return state, pidfd
    from .sandbox import cgroups  # host side, only for a dead container

    cgroups.remove(state.get("cgroups"), timeout=0)  # a dead container's own (empty) cgroups
    if locked:
        _unlink(path)
        return None
    try:
        with store.lock(name, wait=False):
            again = check_alive(_read_state(path))
            if again is None:
                _unlink(path)
            else:
                os.close(again)
    except RuripyError:
        pass  # busy: its holder decides
    return None


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
        signal.pidfd_send_signal(pidfd, 0)  # still the process the checks were about
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
        from .sandbox import proot

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


def _read_state(path: str) -> dict:
    try:
        return read_record(path)
    except (OSError, RuripyError):
        return {}


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def drop_state(store: Store, name: str, pid: int) -> None:
    path = store.state_path(name)
    try:
        if read_record(path).get("pid") == pid:
            os.unlink(path)
    except (OSError, RuripyError):
        pass


def exec_cfg(store: Store, state: dict, overrides: dict) -> dict:
    cfg = dict(state.get("exec") or {})
    for key in ("user", "workdir"):
        if overrides.get(key):
            cfg[key] = overrides[key]
    if overrides.get("env"):
        from . import options

        cfg["env"] = options.merge({"env": cfg.get("env") or []}, {"env": overrides["env"]})["env"]
    cfg["tty"] = bool(overrides.get("tty"))
    cfg["term"] = os.environ.get("TERM") or "xterm"
    cfg["seccomp_cache"] = store.path("cache", "seccomp.marshal")
    return cfg


def exec_(name: str, overrides: dict, argv: list[str]) -> int:
    """`ruripy exec`: run `argv` in the running container `name`."""
    check_name(name)
    store = Store().ensure()
    store.require_container(name)
    found = find(store, name)
    if found and found[0].get("backend") != "proot":
        state, pidfd = found
        return join(state, pidfd, exec_cfg(store, state, overrides), argv)
    if found:
        os.close(found[1])
    from . import lifecycle  # proot has no namespaces to join: a new session (host side)

    if not found and not lifecycle.is_proot(store, name):
        raise RuripyError(
            f"container {name} is not running; start it with 'ruripy start {name}' "
            f"or 'ruripy run {name}'."
        )
    return lifecycle.proot_session(store, name, overrides, argv)


def all_states(store: Store) -> list[tuple[str, dict]]:
    """(name, state) of every running container, cleaning stale state on the way."""
    out = []
    try:
        files = sorted(os.listdir(store.path("state")))
    except FileNotFoundError:
        return out
    for f in files:
        if not f.endswith(".rec"):
            continue
        name = f[:-4]
        try:
            found = find(store, name)
        except RuripyError:
            continue
        if found:
            os.close(found[1])
            out.append((name, found[0]))
    return out


# -- joining and stopping ---------------------------------------------------------------------


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
        from .sandbox import terminal  # here, on the host: the relay runs inside
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
        process.restrict(cfg, flt)
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
        signal.pidfd_send_signal(pidfd, 15)
    except ProcessLookupError:
        return
    if not select.select([pidfd], [], [], timeout)[0]:
        try:
            signal.pidfd_send_signal(pidfd, 9)
        except ProcessLookupError:
            return
        select.select([pidfd], [], [], 10)
