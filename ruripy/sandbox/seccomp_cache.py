"""Compiled seccomp programs kept in ruripy's store, loaded without libseccomp.

Building the default policy with libseccomp (seccomp.py) costs milliseconds on every run
and exec, and libseccomp itself must be loaded. The built-in policies ("default", and
"off" with --deny-syscall names) compile to the same BPF program every time for the same
request, kernel, architecture and libraries, so the program is kept in the store's cache
(one small marshal file, trusted like every file of the store: ours, no symlink, not
writable by others) and loaded with seccomp(2) directly. Profile files are compiled each
time. Standard library only.
"""

import marshal
import os
import sys

from ..errors import RuripyError
from . import syscalls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .seccomp import Filter

# seccomp(2) numbers; on another architecture every program is compiled each time.
_NR_SECCOMP = {
    "x86_64": 317,
    "aarch64": 277,
    "riscv64": 277,
    "armv7l": 383,
    "armv8l": 383,
    "i686": 354,
    "ppc64le": 358,
    "s390x": 348,
}.get(os.uname().machine)
_SECCOMP_SET_MODE_FILTER = 1
_FORMAT = 2  # bump when the key or the stored value changes
_ENTRIES = 16  # a full cache starts over
_LIMIT = 4 << 20
_BUILTIN = ("default", "off")


class Program:
    """A compiled BPF program, installed with seccomp(2) the way libseccomp installs it."""

    __slots__ = ("bpf", "_pointer", "_fprog", "_call", "_prctl", "description")

    def __init__(self, bpf: bytes, description: str) -> None:
        self.bpf = bpf
        self._pointer = syscalls.c_char_p(bpf)  # the program's address, kept with it
        address = syscalls.c_void_p.from_buffer(self._pointer).value
        # struct sock_fprog {unsigned short len; struct sock_filter *filter}
        size = syscalls.sizeof(syscalls.c_void_p)
        count = (len(bpf) // 8).to_bytes(2, sys.byteorder).ljust(size, b"\0")
        self._fprog = count + address.to_bytes(size, sys.byteorder)
        self._call = syscalls.libc.syscall
        self._prctl = syscalls.prctl
        self.description = description

    def load(self) -> None:
        """Set no_new_privs (as libseccomp does) and install the program. The last step
        before execve: imports nothing and creates no ctypes objects."""
        self._prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        if self._call(_NR_SECCOMP, _SECCOMP_SET_MODE_FILTER, 0, self._fprog) != 0:
            raise RuripyError(
                "the kernel refused the seccomp filter ("
                + os.strerror(syscalls.get_errno())
                + "); run with --seccomp off if this kernel lacks seccomp support."
            )


def for_plan(cfg: dict) -> "Program | Filter | None":
    """The filter a launch plan or an exec's settings ask for (through the cache)."""
    return prepare(
        cfg.get("seccomp") or "default",
        cfg.get("deny_syscall") or (),
        caps=cfg.get("cap_keep"),
        cache=cfg.get("seccomp_cache"),
    )


def prepare(
    mode: str = "default",
    deny: "Sequence[str]" = (),
    caps: int | None = None,
    cache: str | None = None,
) -> "Program | Filter | None":
    """seccomp.prepare, through the program cache file `cache` for the built-in policies."""
    mode, deny = normalise(mode, deny)
    if mode == "off" and not deny:
        return None
    if not cache or not _NR_SECCOMP or mode not in _BUILTIN:
        from . import seccomp

        return seccomp.prepare(mode, deny, caps)
    key = _key(mode, deny, caps)
    entries = _read(cache)
    if key not in entries:
        from . import seccomp

        flt = seccomp.prepare(mode, deny, caps)
        try:
            bpf = flt.export()
        finally:
            flt.release()
        entries = _read(cache)  # another start may have added one meanwhile
        if len(entries) >= _ENTRIES:
            entries = {}
        entries[key] = bpf
        _write(cache, entries)
        return Program(bpf, description(mode, deny))
    return Program(entries[key], description(mode, deny))


def normalise(mode: str, deny: "Sequence[str]") -> tuple[str, list[str]]:
    """("off" for Docker's "unconfined", the --deny-syscall names without repeats)."""
    return ("off" if mode == "unconfined" else mode), list(dict.fromkeys(deny))


def description(mode: str, deny: list[str]) -> str:
    return mode + (" + deny " + ",".join(deny) if deny else "")


def _key(mode: str, deny: list[str], caps: int | None) -> tuple:
    """What the compiled program depends on: the policy (seccomp.py), the request, the
    kernel and architecture (libseccomp probes both), and the installed libraries
    (ld.so.cache changes whenever a library package such as libseccomp2 is upgraded)."""
    if caps is None:
        from . import caps as _caps  # not on the run/exec path: a plan says its mask

        caps = 0
        for name in _caps.DEFAULT:
            caps |= 1 << _caps.NUMBER[name]
    stamps = []
    for path in (os.path.join(os.path.dirname(__file__), "seccomp.py"), "/etc/ld.so.cache"):
        try:
            st = os.stat(path)
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            stamps.append(None)
    u = os.uname()
    return (_FORMAT, mode, tuple(deny), caps, u.release, u.machine, tuple(stamps))


def _read(path: str) -> dict:
    """The cache: {} when it is missing, damaged, or not a file of ours alone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022 or st.st_size > _LIMIT:
            return {}
        data = marshal.loads(os.read(fd, st.st_size + 1))
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    finally:
        os.close(fd)
    if not isinstance(data, dict):
        return {}
    return {
        k: v
        for k, v in data.items()
        if isinstance(k, tuple) and isinstance(v, bytes) and v and len(v) % 8 == 0
    }


def _write(path: str, entries: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, flags, 0o600)
        try:
            os.write(fd, marshal.dumps(entries))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:  # only a cache: the next start compiles again
        try:
            os.unlink(tmp)
        except OSError:
            pass
