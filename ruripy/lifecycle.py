"""Running containers: run, exec, start, stop, and the state of running ones.

On the `ruripy run`/`exec` fast path: standard library only, nothing heavy imported.
The state of a running container (init pid, its start time, boot id, namespace inodes,
the settings exec re-applies) lives in the store's state/ folder, never in a rootfs.
"""

import os
import time

from . import options, profile
from .errors import RuripyError
from .sandbox import caps, launch
from .store import Store, read_record, write_record


def backend_of(prof: dict) -> str:
    """The backend a container runs with here: privileged for root, rootless otherwise."""
    wanted = prof.get("backend") or "auto"
    root = os.geteuid() == 0
    if wanted == "auto":
        return "privileged" if root else "rootless"
    if wanted == "privileged" and not root:
        raise RuripyError(
            "backend privileged needs root; run ruripy with sudo, or use --backend rootless."
        )
    if wanted == "rootless" and root:
        raise RuripyError(
            "backend rootless is for non-root callers; as root ruripy uses the privileged backend."
        )
    if wanted == "proot":
        raise RuripyError("the proot backend is not available in this version; use --backend auto.")
    return wanted


def _unsupported(prof: dict) -> None:
    host = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    if prof.get("arch") and prof["arch"] != host:
        raise RuripyError(
            f"running a {prof['arch']} rootfs on a {host} host needs qemu-user support, "
            "which this version does not have yet."
        )
    for key in ("memory", "cpus", "pids_limit"):
        if prof.get(key) is not None:
            raise RuripyError(
                f"--{key.replace('_', '-')} is not supported by this version yet; "
                f"remove it with 'ruripy config NAME --unset {key}'."
            )


def launch_plan(store: Store, name: str, info: dict, prof: dict) -> dict:
    """Plain data the sandbox needs to start container `name`."""
    _unsupported(prof)
    backend = backend_of(prof)
    cdir = store.container_dir(name)
    cfg = {k: prof.get(k) for k in options.BY_KEY}
    cfg.update(
        name=name,
        rootfs=os.path.join(cdir, "rootfs"),
        rootless=backend == "rootless",
        cap_keep=caps.effective_set(
            backend == "privileged", prof.get("cap_add") or (), prof.get("cap_drop") or ()
        ),
        term=os.environ.get("TERM") or "xterm",
    )
    if info.get("storage") == "overlay":
        cfg.update(
            lower=store.path("images", info["image_id"], "rootfs"),
            upper=os.path.join(cdir, "upper"),
            work=os.path.join(cdir, "work"),
        )
    return cfg


def _command(prof: dict, argv: list[str] | None) -> list[str] | None:
    cmd = list(argv) if argv else list(prof.get("command") or [])
    entry = list(prof.get("entrypoint") or [])
    if entry:
        return entry + cmd
    return cmd or None


def running(store: Store, name: str) -> tuple[dict, int] | None:
    """(state, pidfd) of a running container; a stale state file is removed."""
    path = store.state_path(name)
    if not os.path.lexists(path):
        return None
    try:
        state = read_record(path)
    except (OSError, RuripyError):
        state = {}
    pidfd = launch.check_alive(state)
    if pidfd is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return None
    return state, pidfd


def _drop_state(store: Store, name: str, pid: int) -> None:
    path = store.state_path(name)
    try:
        if read_record(path).get("pid") == pid:
            os.unlink(path)
    except (OSError, RuripyError):
        pass


def _load(store: Store, name: str) -> tuple[dict, dict]:
    info = store.container_info(name)
    return info, profile.load_cached(store.container_dir(name))


def _exec_cfg(state: dict, overrides: dict) -> dict:
    cfg = dict(state.get("exec") or {})
    for key in ("user", "workdir"):
        if overrides.get(key):
            cfg[key] = overrides[key]
    if overrides.get("env"):
        cfg["env"] = options.merge({"env": cfg.get("env") or []}, {"env": overrides["env"]})["env"]
    cfg["tty"] = bool(overrides.get("tty"))
    cfg["term"] = os.environ.get("TERM") or "xterm"
    return cfg


def run(name: str, overrides: dict, argv: list[str] | None) -> int:
    """`ruripy run`: start the container and run `argv` (or a login shell), or join it."""
    store = Store().ensure()
    info, prof = _load(store, name)
    prof = options.merge(prof, overrides)
    lock = store.lock(name).__enter__()
    try:
        found = running(store, name)
        if found:
            lock.__exit__()
            state, pidfd = found
            return launch.join(state, pidfd, _exec_cfg(state, overrides), _command(prof, argv))
        cfg = launch_plan(store, name, info, prof)
        cfg["close_fds"] = (lock.fd,)
        started = {}

        def ready(state: dict) -> None:
            state["since"] = int(time.time())
            state["backend"] = "rootless" if cfg["rootless"] else "privileged"
            write_record(store.state_path(name), state)
            started["pid"] = state["pid"]
            lock.__exit__()

        try:
            return launch.start(cfg, _command(prof, argv), ready)
        finally:
            if "pid" in started:
                _drop_state(store, name, started["pid"])
    finally:
        lock.__exit__()


def exec_(name: str, overrides: dict, argv: list[str]) -> int:
    """`ruripy exec`: run `argv` in the running container `name`."""
    store = Store().ensure()
    store.container_info(name)
    found = running(store, name)
    if not found:
        raise RuripyError(
            f"container {name} is not running; start it with 'ruripy start {name}' "
            f"or 'ruripy run {name}'."
        )
    state, pidfd = found
    return launch.join(state, pidfd, _exec_cfg(state, overrides), argv)


def start(name: str) -> bool:
    """`ruripy start`: start detached (the init stays up). False when already running."""
    store = Store().ensure()
    info, prof = _load(store, name)
    with store.lock(name) as lock:
        found = running(store, name)
        if found:
            os.close(found[1])
            return False
        cfg = launch_plan(store, name, info, prof)
        cfg["detach"] = True
        cfg["close_fds"] = (lock.fd,)

        def ready(state: dict) -> None:
            state["since"] = int(time.time())
            state["backend"] = "rootless" if cfg["rootless"] else "privileged"
            write_record(store.state_path(name), state)

        launch.start(cfg, None, ready)
    return True


def stop(name: str, timeout: float = 10) -> bool:
    """`ruripy stop`: SIGTERM to the container, SIGKILL after `timeout`. False if not running."""
    store = Store().ensure()
    store.container_info(name)
    with store.lock(name):
        found = running(store, name)
        if not found:
            return False
        state, pidfd = found
        try:
            launch.stop(state, pidfd, timeout)
        finally:
            os.close(pidfd)
        _drop_state(store, name, state["pid"])
    return True


def running_states(store: Store) -> list[tuple[str, dict]]:
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
            found = running(store, name)
        except RuripyError:
            continue
        if found:
            os.close(found[1])
            out.append((name, found[0]))
    return out
