"""Resource limits: --memory, --cpus and --pids-limit through a cgroup of the container's own.

Each limit needs one controller (memory, cpu, pids). For each, the hierarchy that has it
is used: a cgroup v1 hierarchy that mounts it, else the cgroup v2 hierarchy when its root
offers it. The container's cgroup is made below the caller's own cgroup in v1, and next
to it in v2 (a v2 cgroup holding processes cannot enable controllers for children), so
the container stays inside whatever limits the caller already has. The caller must be
able to write there: root, or a user with a delegated cgroup. Otherwise the start fails
with a message saying what to do; a limit is never silently dropped (security.md P1-L2).

The plan is plain data: `prepare` checks everything without touching the host, `create`
makes the folders and writes the limits, `attach` moves the container's first process in
(before anything of the container runs; every later process inherits it), and `remove`
deletes the folders once the container has ended.

Standard library only.
"""

import os
import time

from ..errors import RuripyError

# Profile key -> (controller, option spelling).
LIMITS = {"memory": ("memory", "--memory"), "cpus": ("cpu", "--cpus"),
          "pids_limit": ("pids", "--pids-limit")}  # fmt: skip
CPU_PERIOD = 100000  # microseconds


def wanted(prof: dict) -> dict:
    """The limits `prof` sets: {key: value} for memory, cpus, pids_limit."""
    return {k: prof[k] for k in LIMITS if prof.get(k) is not None}


def _unescape(path: str) -> str:
    return (
        path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def hierarchies() -> tuple[dict, tuple | None]:
    """({v1 controller: (mountpoint, mount root)}, (v2 mountpoint, mount root) or None)."""
    v1: dict = {}
    v2 = None
    with open("/proc/self/mountinfo", "rb") as f:
        lines = f.read().decode("utf-8", "replace").splitlines()
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, superopts = rfields[0], rfields[2].split(",")
        root, mountpoint = _unescape(fields[3]), _unescape(fields[4])
        if fstype == "cgroup":
            for c in superopts:
                v1.setdefault(c, (mountpoint, root))
        elif fstype == "cgroup2" and v2 is None:
            v2 = (mountpoint, root)
    return v1, v2


def own_cgroups() -> tuple[dict, str | None]:
    """The caller's cgroup paths: ({v1 controller: path}, v2 path or None)."""
    v1: dict = {}
    v2 = None
    with open("/proc/self/cgroup", "rb") as f:
        lines = f.read().decode("utf-8", "replace").splitlines()
    for line in lines:
        hid, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        if hid == "0" and ctrls == "":
            v2 = path
        else:
            for c in ctrls.split(","):
                if c:
                    v1[c] = path
    return v1, v2


def _host_dir(mountpoint: str, mount_root: str, path: str) -> str | None:
    """Where cgroup `path` of a hierarchy is seen, given its mount's root; None if hidden."""
    root = mount_root.rstrip("/")
    if root and path != root and not path.startswith(root + "/"):
        return None
    rel = path[len(root) :].lstrip("/")
    return os.path.join(mountpoint, rel) if rel else mountpoint


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _may_write(path: str) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def _need(option: str, what: str) -> RuripyError:
    return RuripyError(
        f"{option} needs a cgroup the caller may write; {what}. Run ruripy as root, or from "
        "a delegated cgroup (e.g. 'systemd-run --user --scope -p Delegate=yes ruripy run "
        f"...'), or remove the limit ('ruripy config NAME --unset {option[2:].replace('-', '_')}')."
    )


def _values(key: str, value, v2: bool) -> list[tuple[str, str]]:
    if key == "memory":
        return [("memory.max" if v2 else "memory.limit_in_bytes", str(int(value)))]
    if key == "pids_limit":
        return [("pids.max", str(int(value)))]
    quota = max(1000, int(round(float(value) * CPU_PERIOD)))
    if v2:
        return [("cpu.max", f"{quota} {CPU_PERIOD}")]
    return [("cpu.cfs_period_us", str(CPU_PERIOD)), ("cpu.cfs_quota_us", str(quota))]


def prepare(name: str, prof: dict) -> dict | None:
    """Check that every limit in `prof` can be applied here; the plan, or None if no limits.

    Raises RuripyError (status 125) naming the option and what to do when it cannot.
    """
    limits = wanted(prof)
    if not limits:
        return None
    v1_mounts, v2_mount = hierarchies()
    v1_own, v2_own = own_cgroups()
    leaf = f"ruripy-{name}-{os.getpid()}"
    dirs: list[str] = []  # cgroup folders to make, in order
    files: list[tuple[str, str]] = []  # (file, value), written in order
    enable: list[tuple[str, str]] = []  # (v2 subtree_control, "+controller")
    for key, value in limits.items():
        ctrl, option = LIMITS[key]
        if ctrl in v1_mounts and ctrl in v1_own:
            mountpoint, root = v1_mounts[ctrl]
            parent = _host_dir(mountpoint, root, v1_own[ctrl])
            if parent is None or not os.path.isdir(parent):
                raise _need(option, f"your {ctrl} cgroup {v1_own[ctrl]} is not visible here")
            if not _may_write(parent):
                raise _need(option, f"the {ctrl} cgroup {parent} belongs to another user")
            d = os.path.join(parent, leaf)
            is_v2 = False
        elif v2_mount and v2_own is not None:
            mountpoint, root = v2_mount
            own = _host_dir(mountpoint, root, v2_own)
            if own is None:
                raise _need(option, f"your cgroup {v2_own} is not visible here")
            parent = (
                own
                if os.path.normpath(own) == os.path.normpath(mountpoint)
                else (os.path.dirname(own))
            )
            if ctrl not in _read(os.path.join(parent, "cgroup.controllers")).split():
                raise _need(
                    option,
                    f"the {ctrl} controller is not available in {parent} "
                    "(cgroup v2 without it, and no cgroup v1 hierarchy mounts it)",
                )
            control = os.path.join(parent, "cgroup.subtree_control")
            if not _may_write(parent) or not os.access(control, os.W_OK):
                raise _need(option, f"the cgroup {parent} belongs to another user")
            if ctrl not in _read(control).split():
                enable.append((control, "+" + ctrl))
            d = os.path.join(parent, leaf)
            is_v2 = True
        else:
            raise _need(option, f"this host has no cgroup hierarchy with the {ctrl} controller")
        if d not in dirs:
            dirs.append(d)
        files.extend((os.path.join(d, f), v) for f, v in _values(key, value, is_v2))
    return {"dirs": dirs, "files": files, "enable": enable}


def create(plan: dict | None) -> None:
    """Make the cgroup folders and write the limits; on failure nothing is left behind."""
    if not plan:
        return
    made: list[str] = []
    try:
        for control, word in plan["enable"]:
            _write(control, word, "enable the controller in")
        for d in plan["dirs"]:
            os.mkdir(d, 0o755)
            made.append(d)
        for path, value in plan["files"]:
            _write(path, value, "set")
    except RuripyError:
        _rmdirs(made)
        raise
    except OSError as e:
        _rmdirs(made)
        raise RuripyError(
            f"could not make the container's cgroup {e.filename or ''}: {e.strerror}."
        ) from None


def _write(path: str, value: str, what: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise RuripyError(
            f"could not {what} the cgroup file {path} ({value}): {e.strerror}."
        ) from None


def attach(plan: dict | None, pid: int) -> None:
    """Move process `pid` (the container's first) into every cgroup of the plan."""
    if not plan:
        return
    for d in plan["dirs"]:
        _write(os.path.join(d, "cgroup.procs"), str(pid), "join")


def _rmdirs(dirs: list[str]) -> None:
    for d in reversed(dirs):
        try:
            os.rmdir(d)
        except OSError:
            pass


def remove(plan: dict | None, timeout: float = 5.0) -> bool:
    """Delete the container's cgroups once their last process is gone (retrying while busy)."""
    if not plan:
        return True
    left = list(plan["dirs"])
    deadline = time.monotonic() + timeout
    while left:
        for d in list(left):
            try:
                os.rmdir(d)
                left.remove(d)
            except FileNotFoundError:
                left.remove(d)
            except OSError:
                pass
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    return not left
