"""The system calls Python 3.11 lacks, through the libc already mapped.

Standard library only. Every wrapper raises OSError with the call's errno on failure.

The C types and function pointers are made from `_ctypes` directly: importing the `ctypes`
package costs about 2.5 ms (it builds some forty C types and imports struct, types and
ctypes._endian), an eighth of what `ruripy exec` spends in Python. What is here is what
`ctypes` itself is made of: the same C types, the same function pointers into the libc
already mapped, errno kept per call; only the names the sandbox uses exist. Anything else
(libseccomp for compiling a filter, doctor) uses ctypes.
"""

import _ctypes
import _signal
import os
import sys

# -- C types and the C library (what ctypes is made of) -----------------------------------

Structure = _ctypes.Structure
byref = _ctypes.byref
sizeof = _ctypes.sizeof
get_errno = _ctypes.get_errno


class c_char(_ctypes._SimpleCData):
    _type_ = "c"


class c_short(_ctypes._SimpleCData):
    _type_ = "h"


class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):
    _type_ = "I"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"


class c_uint64(_ctypes._SimpleCData):
    _type_ = "Q"


class c_char_p(_ctypes._SimpleCData):
    _type_ = "z"


class c_void_p(_ctypes._SimpleCData):
    _type_ = "P"


c_size_t = c_ulong  # Linux: size_t is as wide as unsigned long on every ABI


class _Function(_ctypes.CFuncPtr):
    """A C function returning int, with errno saved for get_errno()."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _Library:
    """The C library already in the process (dlopen(NULL)); functions by attribute."""

    def __init__(self) -> None:
        self._handle = _ctypes.dlopen(None, 0)

    def __getattr__(self, name: str) -> _Function:
        if name.startswith("_"):
            raise AttributeError(name)
        func = _Function((name, self))
        setattr(self, name, func)
        return func


libc = _Library()


def create_string_buffer(size: int):
    """A writable, zeroed char array of `size` bytes."""
    return (c_char * size)()


# -- system calls ---------------------------------------------------------------------------

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# What every container has of its own (a user and a network namespace as its plan says).
CONTAINER_NAMESPACES = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_MACHINE = os.uname().machine
# pivot_root and capset have no libc wrapper everywhere; numbers per architecture.
_NR = {
    "x86_64": {"pivot_root": 155, "capset": 126, "capget": 125, "clone": 56},
    "aarch64": {"pivot_root": 41, "capset": 91, "capget": 90, "clone": 220},
    "riscv64": {"pivot_root": 41, "capset": 91, "capget": 90, "clone": 220},
    "armv7l": {"pivot_root": 218, "capset": 185, "capget": 184, "clone": 120},
    "armv8l": {"pivot_root": 218, "capset": 185, "capget": 184, "clone": 120},
    "i686": {"pivot_root": 217, "capset": 185, "capget": 184, "clone": 120},
    "ppc64le": {"pivot_root": 203, "capset": 184, "capget": 183, "clone": 120},
    "s390x": {"pivot_root": 217, "capset": 185, "capget": 184, "clone": 120},
}.get(_MACHINE, {"pivot_root": 41, "capset": 91, "capget": 90, "clone": 220})

libc.prctl.argtypes = (c_int, c_ulong, c_ulong, c_ulong, c_ulong)
libc.syscall.restype = c_long


def read_file(path: str, limit: int = 1 << 20) -> bytes:
    """Up to `limit` bytes of a small file (a /proc file, a container's /etc/passwd) with
    os.open and os.read: open() would build Python's whole io stack for it. Never waits:
    a FIFO put in the file's place reads as empty (or fails) instead of hanging."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        size = os.fstat(fd).st_size
        want = min(limit, size + 1 if size else 65536)  # /proc files show size 0
        out = []
        got = 0
        while got < limit:
            b = os.read(fd, min(want, limit - got))
            if not b:
                break
            out.append(b)
            got += len(b)
        return b"".join(out)
    finally:
        os.close(fd)


def _check(ret: int, what: str = "", path: str | None = None) -> int:
    if ret < 0:
        e = get_errno()
        if path is not None:
            raise OSError(e, f"{what}: {os.strerror(e)}", path)
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def _b(s: str | bytes | None) -> bytes | None:
    if s is None or isinstance(s, bytes):
        return s
    return os.fsencode(s)


def unshare(flags: int) -> None:
    _check(libc.unshare(flags), "unshare")


def clone(flags: int) -> int:
    """fork(2) into new namespaces (CLONE_NEW* `flags`): the child's pid, 0 in the child.

    What fork() is made of (clone with SIGCHLD and no new stack: the child runs on a copy of
    the caller's), with namespace flags, so the child is born in them: pid 1 of a new pid
    namespace owned by a new user namespace, with no process in between. The caller must be
    single-threaded. Python's own fork bookkeeping is not needed then: ctypes released the
    interpreter lock for the call and takes it back in either process, nothing is being
    imported, and no at-fork hook is registered on the paths that start containers.
    """
    args = (c_ulong(flags | 17), c_ulong(0))  # SIGCHLD to the parent at exit
    if _MACHINE == "s390x":  # clone(stack, flags, ...) there
        args = args[::-1]
    zero = c_ulong(0)
    return _check(libc.syscall(c_long(_NR["clone"]), *args, zero, zero, zero), "clone")


POSIX_SPAWN_SETSIGDEF = 0x04
POSIX_SPAWN_SETSIGMASK = 0x08
POSIX_SPAWN_SETSID = 0x80


def _sigset(mask: int) -> bytes:
    """A sigset_t (128 bytes: unsigned longs in the machine's byte order) for signals 1-64."""
    size = sizeof(c_ulong)
    words = (mask >> (8 * size * i) & ((1 << (8 * size)) - 1) for i in range(8 // size))
    return b"".join(w.to_bytes(size, sys.byteorder) for w in words).ljust(128, b"\0")


# Every signal but KILL and STOP, the C library's own two (32, 33) included: sigaddset
# refuses to name them, so os.posix_spawn cannot reset them, and glibc's posix_spawn sets
# them to "ignored" in the child otherwise, which the command would inherit.
_ALL_SIGNALS = _sigset(((1 << 64) - 1) & ~(1 << 8) & ~(1 << 18))
_NO_SIGNALS = bytes(128)


def posix_spawn(path: str, argv: list[str], env: dict, setsid: bool, tty: str | None) -> int:
    """posix_spawn(3) of the C library: `path` runs in a child that shares this process's
    memory until its exec (vfork) instead of copying it. The child starts with every
    signal at its default and none blocked (P1-E10), in a session of its own when
    `setsid`, and with `tty` opened as its stdin, stdout, stderr and (after the setsid)
    controlling terminal. Returns its pid; OSError with the exec's errno when it failed.
    """
    attr = create_string_buffer(512)  # posix_spawnattr_t: 336 bytes with glibc
    actions = create_string_buffer(512)  # posix_spawn_file_actions_t: 80
    libc.posix_spawnattr_init(attr)
    libc.posix_spawn_file_actions_init(actions)
    try:
        libc.posix_spawnattr_setsigdefault(attr, _ALL_SIGNALS)
        libc.posix_spawnattr_setsigmask(attr, _NO_SIGNALS)
        flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK
        flags |= POSIX_SPAWN_SETSID if setsid else 0
        libc.posix_spawnattr_setflags(attr, c_short(flags))
        if tty is not None:
            libc.posix_spawn_file_actions_addopen(actions, 0, _b(tty), os.O_RDWR, 0)
            libc.posix_spawn_file_actions_adddup2(actions, 0, 1)
            libc.posix_spawn_file_actions_adddup2(actions, 0, 2)
        # argv and envp in one array (one C type made, not two), each ending in NULL
        args = [os.fsencode(a) for a in argv]
        envp = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
        both = (c_char_p * (len(args) + len(envp) + 2))(*args, None, *envp)
        pid = c_int()
        err = libc.posix_spawn(
            byref(pid),
            _b(path),
            actions,
            attr,
            both,
            byref(both, (len(args) + 1) * sizeof(c_char_p)),
        )
    finally:
        libc.posix_spawn_file_actions_destroy(actions)
        libc.posix_spawnattr_destroy(attr)
    if err:
        raise OSError(err, os.strerror(err), path)
    return pid.value


def setns(fd: int, nstype: int = 0) -> None:
    _check(libc.setns(fd, nstype), "setns")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    _check(
        libc.mount(_b(source), _b(target), _b(fstype), c_ulong(flags), _b(data)),
        f"mount {fstype or ''} {source or ''}".strip(),
        target,
    )


def umount2(target: str, flags: int = 0) -> None:
    _check(libc.umount2(_b(target), flags), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(libc.syscall(_NR["pivot_root"], _b(new_root), _b(put_old)), "pivot_root")


def sethostname(name: str) -> None:
    b = name.encode()
    _check(libc.sethostname(b, len(b)), "sethostname")


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    return _check(libc.prctl(option, a2, a3, a4, a5), "prctl")


def capset(effective: int, permitted: int, inheritable: int = 0) -> None:
    # struct __user_cap_header_struct {u32 version; int pid}, then two
    # struct __user_cap_data_struct {u32 effective, permitted, inheritable}: the low and
    # the high 32 capabilities (_LINUX_CAPABILITY_VERSION_3).
    header = _u32(0x20080522) + _u32(0)
    data = b"".join(
        _u32(effective >> s) + _u32(permitted >> s) + _u32(inheritable >> s) for s in (0, 32)
    )
    _check(libc.syscall(_NR["capset"], header, data), "capset")


def _u32(n: int) -> bytes:
    return (n & 0xFFFFFFFF).to_bytes(4, sys.byteorder)


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        return int(read_file("/proc/sys/kernel/cap_last_cap"))
    except (OSError, ValueError):
        return 40  # CAP_CHECKPOINT_RESTORE, the last one of Linux 5.9 to 6.x


def drop_bounding(keep: int) -> None:
    """Shrink the bounding set to the capabilities in the mask `keep` and clear the ambient
    set (needs CAP_SETPCAP); capset then sets the rest."""
    for i in range(last_cap() + 1):
        if not keep & (1 << i):
            try:
                prctl(PR_CAPBSET_DROP, i)
            except OSError as e:
                if e.errno != 22:  # EINVAL: capability unknown to this kernel
                    raise
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
_NR_MOUNT_SETATTR = 442  # the same on every architecture


def mount_setattr(fd: int, attr_set: int, recursive: bool = False) -> None:
    """Set mount attributes (read-only, nosuid, ...) on the mount `fd` refers to."""
    # struct mount_attr {u64 attr_set, attr_clr, propagation, userns_fd}
    attr = attr_set.to_bytes(8, sys.byteorder) + bytes(24)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(libc.syscall(_NR_MOUNT_SETATTR, fd, b"", flags, attr, len(attr)), "mount_setattr")


PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
TMPFS_MAGIC = 0x01021994


def fstatfs_type(fd: int) -> int:
    """The filesystem magic number of the file `fd` refers to."""
    buf = create_string_buffer(256)  # struct statfs; f_type comes first
    _check(libc.fstatfs(fd, buf), "fstatfs")
    return c_long.from_buffer(buf).value


def loopback_up() -> None:
    """Bring `lo` up in a new network namespace (two ioctls; no socket module import)."""
    fd = _check(libc.socket(2, 2, 0), "socket")  # AF_INET, SOCK_DGRAM
    try:
        ifr = create_string_buffer(40)
        ifr.raw = b"lo".ljust(40, b"\0")
        _check(libc.ioctl(fd, 0x8913, ifr), "SIOCGIFFLAGS lo")
        flags = c_short.from_buffer(ifr, 16)
        flags.value |= 0x1 | 0x40  # IFF_UP | IFF_RUNNING
        _check(libc.ioctl(fd, 0x8914, ifr), "SIOCSIFFLAGS lo")
    finally:
        os.close(fd)


def reset_signals() -> None:
    """Default dispositions, empty mask: what a container's command starts with (P1-E10)."""
    for s in range(1, 65):
        if s in (9, 19, 32, 33):
            continue
        try:
            _signal.signal(s, _signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
