"""Running containers: run, exec, start, stop, and the state of running ones.

On the `ruripy run`/`exec` fast path: standard library only, nothing heavy imported.
The state of a running container (init pid, its start time, boot id, namespace inodes,
the settings exec re-applies) lives in the store's state/ folder, never in a rootfs.
"""

import os
import time

from . import options, profile, running
from .errors import RuripyError
from .sandbox import binfmt, caps, idmap, launch, process
from .store import Store, check_name, write_record


def backend_of(prof: dict, store: Store | None = None) -> str:
    """The backend a container runs with here: privileged for root; rootless otherwise, or
    proot once this boot's kernel was found refusing user namespaces (sandbox/proot.py)."""
    wanted = prof.get("backend") or "auto"
    root = os.geteuid() == 0
    if wanted == "auto":
        if root:
            return "privileged"
        return "proot" if idmap.userns_blocked((store or Store()).path("cache")) else "rootless"
    if wanted == "privileged" and not root:
        raise RuripyError(
            "backend privileged needs root; run ruripy with sudo, or use --backend rootless."
        )
    if wanted == "rootless" and root:
        raise RuripyError(
            "backend rootless is for non-root callers; as root ruripy uses the privileged backend."
        )
    return wanted


def _host_support(store: Store, cfg: dict, prof: dict) -> None:
    """Foreign architectures (qemu through binfmt_misc, or proot -q) and resource limits
    (a cgroup plan, made just before the start): checked here, on the host side."""
    roots = [cfg["upper"], cfg["lower"]] if cfg.get("lower") else [cfg["rootfs"]]
    cfg.update(binfmt.plan(prof.get("arch"), roots, cfg["backend"]))
    limited = any(prof.get(k) is not None for k in options.LIMIT_KEYS)
    cfg["cgroups"] = _cgroups().prepare(cfg["name"], prof) if limited else None
    cfg["cache_dir"] = store.path("cache")


def _cgroups():
    """The resource-limit module, loaded only for containers that have limits (host side)."""
    from .sandbox import cgroups

    return cgroups


def launch_plan(store: Store, name: str, info: dict, prof: dict) -> dict:
    """Plain data the sandbox needs to start container `name`."""
    backend = backend_of(prof, store)
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
        backend=backend,
        seccomp_cache=store.path("cache", "seccomp.marshal"),
    )
    if info.get("storage") == "overlay":
        cfg.update(
            lower=store.path("images", info["image_id"], "rootfs"),
            upper=os.path.join(cdir, "upper"),
            work=os.path.join(cdir, "work"),
        )
    _host_support(store, cfg, prof)
    return cfg


def _launch(cfg: dict, argv: list[str] | None, ready) -> int:
    """Start with the plan's backend. The container's cgroups live while it runs (for a
    detached start, until stop)."""
    plan = cfg.get("cgroups")
    cgroups = _cgroups() if plan else None
    if plan:
        cgroups.create(plan)
    detached = False

    def on_ready(state: dict) -> None:
        state["cgroups"] = cfg.get("cgroups")
        ready(state)

    try:
        if cfg["backend"] == "proot":
            from .sandbox import proot  # host side, before anything starts

            def attach(pid: int) -> None:
                if plan:
                    cgroups.attach(plan, pid)

            return proot.run(cfg, argv, on_ready, process.environment, attach)
        status = launch.start(cfg, argv, on_ready)
        detached = bool(cfg.get("detach"))
        return status
    finally:
        if plan and not detached:
            cgroups.remove(plan)


def _userns_fallback(store: Store, prof: dict, cfg: dict) -> bool:
    """After a failed rootless start under `auto`: True when the kernel refuses user
    namespaces and proot is installed (remembered for this boot: later runs go straight
    to proot)."""
    if cfg["backend"] != "rootless" or (prof.get("backend") or "auto") != "auto":
        return False
    from .sandbox import proot

    if proot.find_proot() is None:
        return False
    return idmap.note_userns_blocked(store.path("cache"))


def is_proot(store: Store, name: str) -> bool:
    try:
        return backend_of(_load(store, name)[1], store) == "proot"
    except RuripyError:
        return False


def proot_session(store: Store, name: str, overrides: dict, argv: list[str] | None) -> int:
    """exec, or run on a running container, under proot: there are no namespaces to join,
    so a new proot session starts in the same root."""
    info, prof = _load(store, name)
    prof = options.merge(prof, overrides)
    cfg = launch_plan(store, name, info, prof)
    process.say(f"note: proot has no namespaces to join; this is a new proot session in {name}.")
    return _launch(cfg, _command(prof, argv), lambda state: None)


def _command(prof: dict, argv: list[str] | None) -> list[str] | None:
    cmd = list(argv) if argv else list(prof.get("command") or [])
    entry = list(prof.get("entrypoint") or [])
    if entry:
        return entry + cmd
    return cmd or None


def _load(store: Store, name: str) -> tuple[dict, dict]:
    info = store.container_info(name)
    return info, profile.load_cached(store.container_dir(name))


def run(name: str, overrides: dict, argv: list[str] | None) -> int:
    """`ruripy run`: start the container and run `argv` (or a login shell), or join it."""
    check_name(name)  # before any file is touched (P0-N5)
    store = Store().ensure()
    info, prof = _load(store, name)
    prof = options.merge(prof, overrides)
    while True:
        lock = store.lock(name).__enter__()
        try:
            store.require_container(name)  # still there (an rm may have held the lock)
            found = running.find(store, name, locked=True)
        except BaseException:
            lock.__exit__()
            raise
        if not found:
            break
        lock.__exit__()
        state, pidfd = found
        if state.get("backend") == "proot":
            os.close(pidfd)
            return proot_session(store, name, overrides, argv)
        cfg = running.exec_cfg(store, state, overrides)
        try:
            return running.join(state, pidfd, cfg, _command(prof, argv))
        except running.Gone:
            continue  # it stopped between the check and the join: nothing joined, start it
    try:
        cfg = launch_plan(store, name, info, prof)
        cfg["close_fds"] = (lock.fd,)
        started = {}

        def ready(state: dict) -> None:
            state["since"] = int(time.time())
            state["backend"] = cfg["backend"]
            write_record(store.state_path(name), state, durable=False)
            started["pid"] = state["pid"]
            lock.__exit__()

        try:
            try:
                return _launch(cfg, _command(prof, argv), ready)
            except RuripyError:
                if "pid" in started or not _userns_fallback(store, prof, cfg):
                    raise
            cfg = launch_plan(store, name, info, prof)  # proot now
            return _launch(cfg, _command(prof, argv), ready)
        finally:
            if "pid" in started:
                running.drop_state(store, name, started["pid"])
    finally:
        lock.__exit__()


def start(name: str) -> bool:
    """`ruripy start`: start detached (the init stays up). False when already running."""
    check_name(name)
    store = Store().ensure()
    info, prof = _load(store, name)
    with store.lock(name) as lock:
        store.require_container(name)  # still there (an rm may have held the lock)
        found = running.find(store, name, locked=True)
        if found:
            os.close(found[1])
            return False
        if backend_of(prof, store) == "proot":
            raise RuripyError(
                f"the proot backend cannot keep {name} running in the background (proot has "
                f"no init to keep); use 'ruripy run {name}': each run and exec is its own "
                "proot session."
            )
        cfg = launch_plan(store, name, info, prof)
        cfg["detach"] = True
        cfg["close_fds"] = (lock.fd,)

        def ready(state: dict) -> None:
            state["since"] = int(time.time())
            state["backend"] = cfg["backend"]
            write_record(store.state_path(name), state, durable=False)

        _launch(cfg, None, ready)
    return True


def stop(name: str, timeout: float = 10) -> bool:
    """`ruripy stop`: SIGTERM to the container, SIGKILL after `timeout`. False if not running."""
    check_name(name)
    store = Store().ensure()
    store.require_container(name)
    with store.lock(name):
        return stop_locked(store, name, timeout)


def stop_locked(store: Store, name: str, timeout: float) -> bool:
    """stop() for a caller that holds the container's lock."""
    found = running.find(store, name, locked=True)
    if not found:
        return False
    state, pidfd = found
    try:
        if state.get("backend") == "proot":
            from .sandbox import proot

            proot.stop(state, pidfd, timeout)
        else:
            running.stop(state, pidfd, timeout)
    finally:
        os.close(pidfd)
    running.drop_state(store, name, state["pid"])
    if state.get("cgroups"):
        _cgroups().remove(state["cgroups"])
    return True
