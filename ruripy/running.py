"""Running containers: their state, whether one still runs, and `ruripy exec` into it.

The state of a running container (init pid, its start time, boot id, namespace inodes, the
settings exec re-applies) lives in the store's state/ folder, never in a rootfs. This is the
whole `ruripy exec` path: it imports no module for starting a container (lifecycle.py does
that), so exec loads as little as it can. Standard library only.
"""

import _signal as signal
import os

from .errors import RuripyError
from .sandbox import process
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
        from .sandbox import join

        return join.join(state, pidfd, exec_cfg(store, state, overrides), argv)
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
