"""The one place that resolves paths inside a container root.

Every path inside a rootfs is controlled by the image. Resolve it here, keep the fd, and
operate on the fd (`*at()` calls, `f*()` calls, or `fd_path(fd)` as a mount target). Absolute
symlinks and `..` are clamped at the root, as if the process had `chroot`ed into it: nothing
resolved here ever names a file outside the root.

openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) does the work when the kernel has it; a
user-space component walk (each step `O_NOFOLLOW|O_PATH`, symlink targets read with
readlinkat and walked again from the root or the link's folder, at most 40 links) takes over
when openat2 is missing (ENOSYS, or EPERM from a seccomp filter) or when the module flag
`USE_OPENAT2` is False (tests switch it off to prove the fallback on its own).

Standard library only; failures raise OSError with the errno of the step that failed.
"""

import errno
import os
import stat

from . import syscalls

USE_OPENAT2 = True
MAXSYMLINKS = 40

_SYS_OPENAT2 = 437  # the same number on every architecture (new syscall table)
_AT_FDCWD = -100
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_WALK_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_FOLLOW_CHECK = os.O_NOFOLLOW | os.O_DIRECTORY  # cases where open itself refuses a link
_MAX_STEPS = 4096  # components walked in one fallback resolution, symlink expansions included


class _OpenHow(syscalls.Structure):
    _fields_ = [
        ("flags", syscalls.c_uint64),
        ("mode", syscalls.c_uint64),
        ("resolve", syscalls.c_uint64),
    ]


_libc = syscalls.libc
_syscall = _libc.syscall  # returns a long (syscalls sets its restype)
_have_openat2: bool | None = None  # None: not probed yet


def fd_path(fd: int) -> str:
    """The /proc path naming an open fd, for mount targets and calls without an *at form."""
    return f"/proc/self/fd/{fd}"


def open_root(path: str) -> int:
    """An O_PATH|O_DIRECTORY fd of the root folder `path`; a symlink as the root is refused."""
    try:
        return os.open(path, _WALK_DIR)
    except NotADirectoryError:
        if os.path.islink(path):
            raise OSError(errno.ELOOP, "the root folder is a symlink", path) from None
        raise


def resolve(rootfd: int, path: str, flags: int = os.O_PATH, mode: int = 0o644) -> int:
    """Open `path` as seen from inside the root `rootfd` (O_CLOEXEC is always added).

    Symlinks, including the final component unless `flags` has O_NOFOLLOW, are followed
    inside the root; `..` stops at the root. With O_CREAT the file is created in-root.
    """
    flags |= os.O_CLOEXEC
    rel = _check(path)
    if USE_OPENAT2 and _openat2_usable():
        creating = flags & os.O_CREAT or (flags & os.O_TMPFILE) == os.O_TMPFILE
        how = _OpenHow(flags, mode if creating else 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        cpath = os.fsencode(rel or ".")
        for _ in range(64):
            fd = _syscall(
                syscalls.c_long(_SYS_OPENAT2),
                syscalls.c_int(rootfd),
                syscalls.c_char_p(cpath),
                syscalls.byref(how),
                syscalls.c_size_t(syscalls.sizeof(how)),
            )
            if fd >= 0:
                return fd
            err = syscalls.get_errno()
            if err in (errno.EINTR, errno.EAGAIN):
                continue  # EAGAIN: a rename raced with a ".." step; the kernel asks to retry
            if err == errno.ENOSYS or (err == errno.EPERM and not _probe_openat2()):
                _mark_openat2_missing()
                break
            raise OSError(err, os.strerror(err), path)
        else:
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)
    return _walk(rootfd, rel, flags, mode, None)


def resolve_parent(
    rootfd: int, path: str, create: bool = False, mode: int = 0o755
) -> tuple[int, str]:
    """(fd of the parent folder, resolved in-root, final component); the final is not followed.

    With `create`, missing parent folders are made (mode `mode`). A path that ends in `..`
    or names the root itself has no final component: EINVAL.
    """
    parts = [p for p in _check(path).split("/") if p not in ("", ".")]
    if not parts or parts[-1] == "..":
        raise OSError(errno.EINVAL, "the path has no final component to create", path)
    parent = "/".join(parts[:-1])
    if create:
        return mkdirs(rootfd, parent, mode), parts[-1]
    return resolve(rootfd, parent, os.O_PATH | os.O_DIRECTORY), parts[-1]


def mkdirs(rootfd: int, path: str, mode: int = 0o755) -> int:
    """Create every missing folder of `path` in-root (like `mkdir -p` after chroot).

    Symlinks on the way are followed inside the root, dangling ones too (their target is
    created). Returns an O_PATH fd of the last folder.
    """
    rel = _check(path)
    try:
        return resolve(rootfd, rel, os.O_PATH | os.O_DIRECTORY)
    except FileNotFoundError:
        pass
    return _walk(rootfd, rel, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, mode)


def _check(path: str) -> str:
    if "\0" in path:
        raise OSError(errno.EINVAL, "the path contains a NUL byte", path)
    return path.lstrip("/")


def _openat2_usable() -> bool:
    global _have_openat2
    if _have_openat2 is None:
        _have_openat2 = _probe_openat2()
    return _have_openat2


def _mark_openat2_missing() -> None:
    global _have_openat2
    _have_openat2 = False


def _probe_openat2() -> bool:
    """Whether openat2 works at all (ENOSYS: old kernel; EPERM: a seccomp filter)."""
    how = _OpenHow(os.O_PATH | os.O_CLOEXEC, 0, 0)
    fd = _syscall(
        syscalls.c_long(_SYS_OPENAT2),
        syscalls.c_int(_AT_FDCWD),
        syscalls.c_char_p(b"/"),
        syscalls.byref(how),
        syscalls.c_size_t(syscalls.sizeof(how)),
    )
    if fd >= 0:
        os.close(fd)
        return True
    return False


def _readlink(dirfd: int, name: str) -> str | None:
    """The target of symlink `name` in `dirfd`, or None when it is not a symlink."""
    try:
        return os.readlink(name, dir_fd=dirfd)
    except OSError as e:
        if e.errno == errno.EINVAL:
            return None
        raise


def _walk(rootfd: int, path: str, flags: int, mode: int, create_mode: int | None) -> int:
    try:
        return _walk_steps(rootfd, path, flags, mode, create_mode)
    except OSError as e:
        if e.filename == path:
            raise
        raise OSError(e.errno, e.strerror, path) from None


def _walk_steps(rootfd: int, path: str, flags: int, mode: int, create_mode: int | None) -> int:
    """The user-space resolution: one component at a time, never following a link blindly.

    `stack` holds the fds of the folders walked from the root, so `..` goes back one real
    step and stops at the root. With `create_mode` every component is a folder, created when
    missing, and the fd of the last one is returned.
    """
    # "" and "." stay in the list: a name followed by them must be a folder ("a/." or "a/")
    comps = path.split("/")
    comps.reverse()  # a stack: the next component is at the end
    stack = [rootfd]
    links = steps = 0
    try:
        while comps:
            steps += 1
            if steps > _MAX_STEPS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            name = comps.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            cur = stack[-1]
            last = not comps and create_mode is None
            try:
                if last:
                    fd = os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=cur)
                else:
                    fd = os.open(name, _WALK_DIR, dir_fd=cur)
            except FileNotFoundError:
                if create_mode is None:
                    raise
                try:
                    os.mkdir(name, create_mode, dir_fd=cur)
                except FileExistsError:
                    pass  # a dangling symlink (followed on the retry) or a racing mkdir
                comps.append(name)
                continue
            except OSError as e:
                follow = not last or not flags & os.O_NOFOLLOW
                if not follow or e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                target = _readlink(cur, name)
                if target is None:
                    raise
                links += 1
                if links > MAXSYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path) from None
                _expand(stack, comps, target)
                continue
            # O_PATH|O_NOFOLLOW opens a symlink itself: look before returning it
            follow_path = last and flags & os.O_PATH and not flags & _NO_FOLLOW_CHECK
            if follow_path and stat.S_ISLNK(os.fstat(fd).st_mode):
                os.close(fd)
                target = _readlink(cur, name)
                if target is None:  # replaced in between: take this step again
                    comps.append(name)
                    continue
                links += 1
                if links > MAXSYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                _expand(stack, comps, target)
                continue
            if last:
                return fd
            stack.append(fd)
        # the path named a folder already walked (empty, "..", every folder of mkdirs)
        if create_mode is not None and len(stack) > 1:
            return stack.pop()
        return os.open(".", flags, mode, dir_fd=stack[-1])
    finally:
        for fd in stack[1:]:
            os.close(fd)


def _expand(stack: list[int], comps: list[str], target: str) -> None:
    """Continue the walk with a symlink's target: from the root when it is absolute."""
    if target.startswith("/"):
        while len(stack) > 1:
            os.close(stack.pop())
    comps.extend(reversed(target.split("/")))
