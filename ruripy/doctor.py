"""`ruripy doctor`: what this host allows, and how to fix what it lacks.

Each check looks for real where it can (it creates a user namespace, maps ids through
newuidmap, mounts an overlay in a throwaway user namespace, opens a pidfd, calls openat2,
loads libseccomp) and returns a `Check`: a stable name, OK / WARN / FAIL, what it found, and
for anything not OK the command that fixes it. FAIL means ruripy cannot run containers the
usual way here; WARN means a feature is missing or degraded. The checks never change the
host; the only thing they create is a temporary folder, removed again.
"""

import ctypes
import os
import struct
import tempfile

from .sandbox import syscalls
from .sandbox.idmap import NEWIDMAP, SUBID_FILES, IdMap, caller_idmap, find_program, subid_range
from .store import Store

OK, WARN, FAIL = "OK", "WARN", "FAIL"
WANTED_IDS = 65536
SYSCTLS = (
    ("kernel.unprivileged_userns_clone", "/proc/sys/kernel/unprivileged_userns_clone", "1"),
    ("user.max_user_namespaces", "/proc/sys/user/max_user_namespaces", None),
    (
        "kernel.apparmor_restrict_unprivileged_userns",
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "0",
    ),
)
CAP_SETGID, CAP_SETUID = 6, 7


class Check:
    """One line of the report."""

    __slots__ = ("name", "status", "detail", "fix")

    def __init__(self, name: str, status: str, detail: str, fix: str | None = None) -> None:
        self.name = name
        self.status = status
        self.detail = detail
        self.fix = fix if status != OK else None

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def _root() -> bool:
    return os.geteuid() == 0


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _child_status(fn) -> int:
    """Run `fn()` in a forked child; its return value (an exit status) comes back."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# -- user namespaces and id maps -------------------------------------------------------------


def check_userns() -> Check:
    values = []
    fix = None
    for name, path, want in SYSCTLS:
        val = _read(path)
        if val is None:
            continue
        values.append(f"{name}={val}")
        bad = val == "0" if want is None else val != want
        if bad and fix is None:
            fix = f"sudo sysctl -w {name}={'15000' if want is None else want}"
            fix += " (and in /etc/sysctl.d/ to keep it)"

    def probe() -> int:
        try:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
        except OSError as e:
            return min(e.errno or 1, 100)
        return 0

    code = _child_status(probe)
    found = ", ".join(values) or "no sysctl restricts them"
    if code == 0:
        return Check("userns", OK, f"a user namespace can be created ({found})")
    why = os.strerror(code) if 0 < code < 100 else f"status {code}"
    fix = fix or "use a kernel built with CONFIG_USER_NS=y, or --backend proot"
    if _root():
        return Check("userns", WARN, f"root cannot create user namespaces ({why}; {found})", fix)
    # With proot installed the proot backend still runs containers (see the backend line).
    severity = WARN if _proot() else FAIL
    return Check("userns", severity, f"creating a user namespace failed ({why}; {found})", fix)


def _file_caps(path: str) -> int:
    """The permitted set of a file's capabilities (security.capability), 0 when none."""
    try:
        raw = os.getxattr(path, "security.capability")
    except OSError:
        return 0
    if len(raw) < 12:
        return 0
    _, lo = struct.unpack_from("<II", raw, 0)
    hi = struct.unpack_from("<I", raw, 12)[0] if len(raw) >= 16 else 0
    return lo | (hi << 32)


def check_newidmap(prog: str, path: str | None = None) -> Check:
    """newuidmap or newgidmap (at `path`, default: where it is installed) can map ranges."""
    cap = CAP_SETUID if prog == "newuidmap" else CAP_SETGID
    cap_name = "cap_setuid" if prog == "newuidmap" else "cap_setgid"
    path = path or find_program(prog)
    severity = WARN if _root() else FAIL
    if path is None:
        return Check(
            prog,
            severity,
            f"{prog} is not installed; rootless containers map only one id",
            "sudo apt-get install uidmap (Fedora, Arch: shadow-utils / shadow)",
        )
    st = os.stat(path)
    if st.st_uid == 0 and st.st_mode & 0o4000:
        return Check(prog, OK, f"{path} is setuid root")
    if _file_caps(path) & (1 << cap):
        return Check(prog, OK, f"{path} has the file capability {cap_name}")
    return Check(
        prog,
        severity,
        f"{path} is neither setuid root nor has {cap_name}; it cannot map id ranges",
        f"sudo chmod u+s {path} (or: sudo setcap {cap_name}=ep {path})",
    )


def check_subids(path: str) -> Check:
    kind = os.path.basename(path)[3:]  # uid / gid
    name = "sub" + kind
    user = _user()
    found = subid_range(path, os.getuid())
    fix = (
        f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user} "
        f"(pick a range no other user in /etc/subuid and /etc/subgid has)"
    )
    if found is None:
        if _root():
            return Check(name, OK, f"no range for {user} in {path}; not needed as root")
        return Check(
            name,
            WARN,
            f"no range for {user} in {path}: containers map one id only, so chown and "
            "package managers may fail",
            fix,
        )
    start, count = found
    detail = f"{user} has {count} {kind}s from {start} in {path}"
    if count >= WANTED_IDS or _root():
        return Check(name, OK, detail)
    return Check(
        name,
        WARN,
        f"{detail}; images with ids of {count} or more will not unpack ({WANTED_IDS} wanted)",
        fix,
    )


def check_idmap() -> Check:
    """Map the caller's ranges into a user namespace for real, as a rootless run does."""
    if _root():
        return Check("idmap", OK, "not needed as root (the privileged backend maps nothing)")
    from .errors import RuripyError
    from .sandbox.userns import UsernsCall

    idmap = caller_idmap()
    try:
        got = UsernsCall(_read, "/proc/self/uid_map", idmap=idmap).start().wait()
    except RuripyError as e:
        return Check("idmap", FAIL, f"mapping ids failed: {e}", "see the lines above")
    lines = (got or "").splitlines()
    if idmap.ranges:
        return Check(
            "idmap",
            OK,
            f"your id and {idmap.size - 1} more mapped through newuidmap and newgidmap",
        )
    return Check(
        "idmap",
        WARN,
        f"only your own id is mapped ({len(lines)} map line); see the subuid line",
        "add /etc/subuid and /etc/subgid ranges (see the subuid line)",
    )


# -- filesystems -----------------------------------------------------------------------------


def _mount_of(path: str) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount holding `path`."""
    best = ("/", "?")
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                point = left.split()[4].replace("\\040", " ")
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(
                    point
                ) >= len(best[0]):
                    best = (point, right.split()[0])
    except OSError:
        pass
    return best


def _probe_dir(store: Store) -> str:
    """Where to try things: inside the storage root when it exists, else its nearest
    existing parent (the same filesystem, most likely), else the temporary folder."""
    path = store.root
    while path != "/" and not os.path.isdir(path):
        path = os.path.dirname(path)
    if path != "/" and os.access(path, os.W_OK | os.X_OK):
        return path
    return tempfile.gettempdir()


def _overlay_inside(base: str) -> str:
    """In the (throwaway) user namespace: mount an overlay once; "" when it worked."""
    dirs = {d: os.path.join(base, d) for d in ("lower", "upper", "work", "merged")}
    for d in dirs.values():
        os.mkdir(d, 0o700)
    with open(os.path.join(dirs["lower"], "file"), "w") as f:
        f.write("x")
    err = ""
    try:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        opts = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
        if os.getuid() == 0 and _read("/proc/self/uid_map").split() != ["0", "0", "4294967295"]:
            opts += ",userxattr"
        syscalls.mount("overlay", dirs["merged"], "overlay", 0, opts)
        try:
            with open(os.path.join(dirs["merged"], "file"), "a") as f:
                f.write("y")
        finally:
            syscalls.umount2(dirs["merged"], syscalls.MNT_DETACH)
    except OSError as e:
        err = e.strerror or str(e)
    for top, subdirs, files in os.walk(base, topdown=False):
        for n in files:
            os.unlink(os.path.join(top, n))
        for n in subdirs:
            os.rmdir(os.path.join(top, n))
    return err


def check_overlay(store: Store) -> Check:
    from .errors import RuripyError
    from .sandbox.userns import UsernsCall

    where = _probe_dir(store)
    _, fstype = _mount_of(where)
    base = tempfile.mkdtemp(prefix=".ruripy-doctor-", dir=where)
    try:
        # One id is enough to ask the kernel; the id-map lines test newuidmap.
        idmap = None if _root() else IdMap(os.getuid(), os.getgid(), None)
        try:
            err = UsernsCall(_overlay_inside, base, idmap=idmap).start().wait()
        except RuripyError as e:
            err = str(e)
    finally:
        try:
            os.rmdir(base)
        except OSError:
            pass
    what = "as root" if _root() else "in a user namespace"
    if not err:
        return Check("overlay", OK, f"overlayfs mounts {what} on {where} ({fstype})")
    return Check(
        "overlay",
        WARN,
        f"overlayfs does not mount {what} on {where} ({fstype}: {err}); every container "
        "will be a full copy of its image",
        "use Linux 5.11 or later, and keep the storage ($RURIPY_HOME) on ext4, xfs, btrfs or tmpfs",
    )


def check_storage(store: Store) -> Check:
    root = store.root
    where = root if os.path.isdir(root) else _probe_dir(store)
    _, fstype = _mount_of(where)
    try:
        st = os.statvfs(where)
        free = st.f_bavail * st.f_frsize
    except OSError as e:
        return Check("storage", FAIL, f"{root}: {e.strerror}", f"mkdir -p {root}")
    from .images.download import human_size

    state = "exists" if os.path.isdir(root) else "will be created"
    detail = f"{root} {state} ({fstype}, {human_size(free)} free)"
    if os.path.isdir(root) and os.stat(root).st_uid != os.geteuid():
        return Check(
            "storage",
            FAIL,
            f"{detail} but belongs to another user",
            f"sudo chown -R {_user()} {root}",
        )
    if not os.access(where, os.W_OK):
        return Check(
            "storage", FAIL, f"{detail} but is not writable", "set RURIPY_HOME to a folder you own"
        )
    if free < 1 << 30:
        return Check("storage", WARN, f"{detail}: less than 1 GB free", "free some disk space")
    return Check("storage", OK, detail)


# -- kernel interfaces -----------------------------------------------------------------------


def check_pidfd() -> Check:
    try:
        fd = os.pidfd_open(os.getpid())
    except (OSError, AttributeError) as e:
        return Check(
            "pidfd",
            FAIL,
            f"pidfd_open failed ({getattr(e, 'strerror', e)}); exec and stop need it",
            "use Linux 5.3 or later",
        )
    os.close(fd)
    return Check("pidfd", OK, "pidfd_open works (exec joins a container through a pidfd)")


def check_openat2() -> Check:
    from .sandbox import inroot

    if inroot._probe_openat2():
        return Check("openat2", OK, "openat2 works (paths inside a rootfs resolve in the kernel)")
    return Check(
        "openat2",
        WARN,
        "openat2 is missing or filtered; paths inside a rootfs are resolved by a slower "
        "user-space walk",
        "use Linux 5.6 or later (and allow openat2 in any outer seccomp filter)",
    )


def check_libseccomp() -> Check:
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return Check(
            "libseccomp",
            FAIL,
            "libseccomp.so.2 cannot be loaded; the default syscall filter needs it",
            "sudo apt-get install libseccomp2 (or run with --seccomp off)",
        )
    version = ""
    try:
        lib.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
        v = lib.seccomp_version().contents
        version = f" {v[0]}.{v[1]}.{v[2]}"
    except (AttributeError, ValueError):
        pass
    return Check("libseccomp", OK, f"libseccomp{version} loads")


def check_cgroup() -> Check:
    """Whether --memory, --cpus and --pids-limit can be applied (sandbox/cgroups.py decides,
    without touching the host)."""
    from .errors import RuripyError
    from .sandbox import cgroups

    samples = {"memory": 1 << 30, "cpus": 1.0, "pids_limit": 1024}
    works, fails = [], []
    for key, value in samples.items():
        option = cgroups.LIMITS[key][1]
        try:
            cgroups.prepare("doctor", {key: value})
            works.append(option)
        except RuripyError:
            fails.append(option)
    v1, v2 = cgroups.hierarchies()
    kind = "cgroup v2" if v2 and not v1 else "cgroup v1" if v1 and not v2 else "cgroup v1 and v2"
    if not fails:
        return Check("cgroup", OK, f"{kind}: {', '.join(works)} can be applied")
    fix = (
        "run ruripy as root, or in a delegated cgroup: systemd-run --user --scope "
        "-p Delegate=yes ruripy run ..."
    )
    if not v1 and not v2:
        fix = "mount a cgroup hierarchy (cgroup2 on /sys/fs/cgroup)"
    can = f"; {', '.join(works)} can" if works else ""
    return Check(
        "cgroup",
        WARN,
        f"{kind}: {', '.join(fails)} cannot be applied here (no writable cgroup with that "
        f"controller){can}",
        fix,
    )


# -- other backends and architectures --------------------------------------------------------


def _proot() -> str | None:
    """The proot the proot backend would use ($RURIPY_PROOT, else PATH: Termux's too)."""
    from .sandbox.proot import find_proot

    return find_proot()


def check_proot() -> Check:
    path = _proot()
    if path:
        return Check("proot", OK, f"{path} (for hosts without user namespaces)")
    return Check(
        "proot",
        WARN,
        "proot is not installed; needed only where user namespaces are not allowed "
        "(Android/Termux)",
        "sudo apt-get install proot (Termux: pkg install proot)",
    )


def _qemu_programs() -> list[str]:
    found = set()
    for d in ("/usr/bin", "/usr/local/bin", "/usr/libexec/qemu-binfmt"):
        try:
            for n in os.listdir(d):
                if n.startswith("qemu-") and (n.endswith("-static") or "binfmt" in d):
                    found.add(n.removesuffix("-static").removesuffix("-binfmt")[5:])
        except OSError:
            continue
    return sorted(found)


def check_qemu() -> Check:
    arches = _qemu_programs()
    if arches:
        shown = ", ".join(arches[:6]) + (f" and {len(arches) - 6} more" if len(arches) > 6 else "")
        return Check("qemu-user", OK, f"static qemu-user for {shown}")
    return Check(
        "qemu-user",
        WARN,
        "no static qemu-user emulators; --arch cannot run foreign-architecture rootfs",
        "sudo apt-get install qemu-user-static",
    )


def check_binfmt() -> Check:
    base = "/proc/sys/fs/binfmt_misc"
    status = _read(os.path.join(base, "status"))
    if status is None:
        return Check(
            "binfmt_misc",
            WARN,
            f"binfmt_misc is not mounted on {base}; foreign binaries do not start through qemu",
            f"sudo mount -t binfmt_misc binfmt_misc {base} (systemd: "
            "systemctl restart systemd-binfmt)",
        )
    try:
        entries = sorted(n for n in os.listdir(base) if n.startswith("qemu-"))
    except OSError:
        entries = []
    if status != "enabled":
        return Check(
            "binfmt_misc", WARN, f"binfmt_misc is {status}", f"echo 1 | sudo tee {base}/status"
        )
    if not entries:
        return Check(
            "binfmt_misc",
            WARN,
            "binfmt_misc is mounted but has no qemu entries",
            "sudo apt-get install qemu-user-static binfmt-support",
        )
    return Check("binfmt_misc", OK, f"mounted, {len(entries)} qemu entries")


def check_backend(checks: list[Check]) -> Check:
    by = {c.name: c.status for c in checks}
    if _root():
        return Check("backend", OK, "auto picks privileged (you are root)")
    if by.get("userns") == OK and by.get("idmap") != FAIL:
        return Check("backend", OK, "auto picks rootless (user namespaces work)")
    if by.get("proot") == OK:
        return Check(
            "backend",
            WARN,
            "auto picks proot for run and exec: user namespaces do not work here, and proot "
            "isolates nothing (no seccomp filter, masks or capability bounds); pull, create "
            "and import unpack as your own user, so files keep your id",
            "allow user namespaces (see the userns line) for the rootless backend",
        )
    return Check(
        "backend",
        FAIL,
        "user namespaces do not work here and proot is not installed: no backend can run",
        "fix the userns line, or install proot (Termux: pkg install proot), or use root",
    )


def run_checks(store: Store | None = None) -> list[Check]:
    """Every check, in the order they are shown."""
    store = store or Store()
    steps = [
        check_userns,
        lambda: check_newidmap(NEWIDMAP[0]),
        lambda: check_newidmap(NEWIDMAP[1]),
        lambda: check_subids(SUBID_FILES[0]),
        lambda: check_subids(SUBID_FILES[1]),
        check_idmap,
        lambda: check_overlay(store),
        lambda: check_storage(store),
        check_pidfd,
        check_openat2,
        check_libseccomp,
        check_cgroup,
        check_proot,
        check_qemu,
        check_binfmt,
    ]
    names = [
        "userns", "newuidmap", "newgidmap", "subuid", "subgid", "idmap", "overlay", "storage",
        "pidfd", "openat2", "libseccomp", "cgroup", "proot", "qemu-user", "binfmt_misc",
    ]  # fmt: skip
    out: list[Check] = []
    for name, step in zip(names, steps, strict=True):
        userns = out[0] if out else None
        if userns and userns.status != OK and name in ("idmap", "overlay") and not _root():
            # Both need a user namespace: say so once, on the userns line.
            what = "ids cannot be mapped" if name == "idmap" else "overlayfs cannot be tried"
            out.append(
                Check(
                    name,
                    userns.status if name == "idmap" else WARN,
                    f"{what} without user namespaces (see the userns line)",
                    "see the userns line",
                )
            )
            continue
        try:
            out.append(step())
        except Exception as e:  # a broken check is a finding, not a crash
            if os.environ.get("RURIPY_DEBUG") == "1":
                raise
            out.append(
                Check(name, WARN, f"could not check: {type(e).__name__}: {e}", "report this")
            )
    out.append(check_backend(out))
    return out


def report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<4}  {c.name:<{width}}  {c.detail}")
        if c.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    return "\n".join(lines) + "\n"


def as_json(checks: list[Check]) -> dict:
    return {"checks": [c.as_dict() for c in checks], "ok": all(c.status != FAIL for c in checks)}
