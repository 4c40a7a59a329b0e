"""User namespaces and their id maps: /etc/subuid ranges, newuidmap/newgidmap, fallback;
whether this kernel lets the caller make user namespaces at all (else `auto` uses proot).

The one place that spawns newuidmap and newgidmap. Standard library only.
"""

import os

from ..errors import RuripyError
from . import process, syscalls

SUBID_FILES = ("/etc/subuid", "/etc/subgid")
NEWIDMAP = ("newuidmap", "newgidmap")


def _user_names(uid: int) -> set[str]:
    names = {str(uid)}
    try:
        with open("/etc/passwd", "rb") as f:
            for line in f:
                parts = line.decode("utf-8", "replace").split(":")
                if len(parts) > 2 and parts[2] == str(uid):
                    names.add(parts[0])
    except OSError:
        pass
    return names


def subid_range(path: str, uid: int) -> tuple[int, int] | None:
    """The first (start, count) range of /etc/subuid or /etc/subgid granted to `uid`."""
    names = _user_names(uid)
    try:
        with open(path, "rb") as f:
            for line in f:
                parts = line.decode("utf-8", "replace").strip().split(":")
                if len(parts) != 3 or parts[0] not in names:
                    continue
                try:
                    start, count = int(parts[1]), int(parts[2])
                except ValueError:
                    continue
                if start > 0 and count > 0:
                    return start, count
    except OSError:
        return None
    return None


def find_program(name: str) -> str | None:
    for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


class IdMap:
    """How the caller's ids map into a new user namespace.

    `ranges` is (uid_start, uid_count, gid_start, gid_count) from /etc/subuid and /etc/subgid,
    or None for the single-id fallback (uid 0 inside is the caller, setgroups denied).
    """

    def __init__(self, uid: int, gid: int, ranges: tuple[int, int, int, int] | None) -> None:
        self.uid = uid
        self.gid = gid
        self.ranges = ranges

    @property
    def size(self) -> int:
        return 1 + (min(self.ranges[1], self.ranges[3]) if self.ranges else 0)

    def uid_map(self) -> list[int]:
        return [0, self.uid, 1] + ([1, self.ranges[0], self.ranges[1]] if self.ranges else [])

    def gid_map(self) -> list[int]:
        return [0, self.gid, 1] + ([1, self.ranges[2], self.ranges[3]] if self.ranges else [])

    def warning(self) -> str | None:
        if self.ranges:
            return None
        return (
            f"ruripy: warning: no /etc/subuid and /etc/subgid range for uid {self.uid}; "
            "only one id is mapped, so chown and package managers may fail "
            f"(add one with 'sudo usermod --add-subuids 100000-165535 --add-subgids "
            f"100000-165535 {self.uid}')."
        )

    def apply(self, pid: int) -> None:
        """Write the maps of process `pid` (in a new user namespace) from the parent namespace."""
        if self.ranges:
            progs = [find_program(n) for n in NEWIDMAP]
            if None in progs:
                raise RuripyError(
                    "newuidmap and newgidmap are missing; install them "
                    "('sudo apt-get install uidmap') to map your /etc/subuid range."
                )
            # Start both together, then wait for both: saves a couple of milliseconds.
            children = []
            for prog, m in zip(progs, (self.uid_map(), self.gid_map()), strict=True):
                argv = [prog, str(pid)] + [str(x) for x in m]
                children.append((prog, os.posix_spawn(prog, argv, {}, setsigdef=(13, 25))))
            failed = []
            for prog, child in children:
                _, status = os.waitpid(child, 0)
                if os.waitstatus_to_exitcode(status) != 0:
                    failed.append(os.path.basename(prog))
            if failed:
                raise RuripyError(
                    f"{' and '.join(failed)} could not map your /etc/subuid and /etc/subgid "
                    "ranges; check that they are setuid root ('ls -l /usr/bin/newuidmap') "
                    "and that the ranges in /etc/subuid and /etc/subgid are yours."
                )
            return
        base = f"/proc/{pid}/"
        for fname, data in (
            ("uid_map", f"0 {self.uid} 1\n"),
            ("setgroups", "deny\n"),
            ("gid_map", f"0 {self.gid} 1\n"),
        ):
            fd = os.open(base + fname, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, data.encode())
            finally:
                os.close(fd)


def caller_idmap() -> IdMap:
    uid, gid = os.getuid(), os.getgid()
    u = subid_range(SUBID_FILES[0], uid)
    g = subid_range(SUBID_FILES[1], uid)
    ranges = (u[0], u[1], g[0], g[1]) if u and g else None
    return IdMap(uid, gid, ranges)


def userns_unavailable_reason(sysctl: str = "/proc/sys") -> str:
    """Why creating a user namespace might fail on this host, with the fix."""
    for name, want, fix in (
        ("kernel/unprivileged_userns_clone", "1", "sysctl kernel.unprivileged_userns_clone=1"),
        ("user/max_user_namespaces", None, "sysctl user.max_user_namespaces=15000"),
        (
            "kernel/apparmor_restrict_unprivileged_userns",
            "0",
            "sysctl kernel.apparmor_restrict_unprivileged_userns=0",
        ),
    ):
        path = f"{sysctl}/{name}"
        try:
            with open(path) as f:
                val = f.read().strip()
        except OSError:
            continue
        if (want is None and val == "0") or (want is not None and val != want):
            return f"the kernel does not allow user namespaces ({path} is {val}); run 'sudo {fix}'."
    return (
        "the kernel refused to create a user namespace; check 'ruripy doctor', "
        "or use --backend proot."
    )


def userns_blocked(cache_dir: str) -> bool:
    """True when an earlier run found this boot's kernel refusing user namespaces."""
    try:
        with open(os.path.join(cache_dir, "userns-blocked"), "rb") as f:
            return f.read(64).decode(errors="replace").strip() == process.boot_id()
    except OSError:
        return False


def probe_userns() -> bool:
    """Whether a forked child may unshare(CLONE_NEWUSER) (about a millisecond)."""
    pid = os.fork()
    if pid == 0:
        try:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def note_userns_blocked(cache_dir: str) -> bool:
    """After the rootless path failed: True (and remembered for this boot) if user
    namespaces really are refused, so `auto` may fall back to proot."""
    if probe_userns():
        return False
    from ..store import write_atomic  # only after a refused start

    try:
        write_atomic(os.path.join(cache_dir, "userns-blocked"), (process.boot_id() + "\n").encode())
    except OSError:
        pass
    return True
