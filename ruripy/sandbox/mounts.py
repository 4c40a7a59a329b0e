"""The container's root: overlay or bind, /proc, /dev, /sys, masks, binds, pivot_root.

Every target inside the rootfs is resolved in-root (`inroot`) and mounted through its fd
(/proc/self/fd/N); host files are opened and type-checked on the host before any namespace
exists (`HostResources`). Standard library only.
"""

import os
import stat

from ..errors import RuripyError
from . import inroot, syscalls
from .syscalls import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC

# name -> (major, minor) of the host nodes bound (rootless) or created (privileged).
DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}
# Read as empty: files get the host /dev/null, folders a read-only empty tmpfs.
MASKED_FILES = (
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
)
MASKED_DIRS = (
    "proc/acpi",
    "proc/asound",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
    "sys/fs/selinux",
    "sys/kernel/debug",
    "sys/kernel/tracing",
    "sys/fs/cgroup",
)
READ_ONLY = ("proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger")
O_PATHDIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW


class HostResources:
    """Host files the container needs, opened (O_PATH) and checked before any namespace."""

    def __init__(self, cfg: dict) -> None:
        self.fds: list[int] = []
        self.paths: dict[int, str] = {}
        self.dev: dict[str, int] = {}
        self.binds: list[tuple[int, str, bool, bool]] = []
        self.resolv: bytes | None = None
        try:
            for name, (major, minor) in DEVICES.items():
                try:
                    fd = self._open(f"/dev/{name}")
                except OSError:
                    if name == "tty":
                        continue
                    raise RuripyError(f"the host has no /dev/{name}; cannot build /dev.") from None
                st = os.fstat(fd)
                if not stat.S_ISCHR(st.st_mode) or (
                    os.major(st.st_rdev),
                    os.minor(st.st_rdev),
                ) != (major, minor):
                    raise RuripyError(f"the host's /dev/{name} is not the expected device.")
                self.dev[name] = fd
            for spec in cfg.get("bind") or ():
                src, dst, ro = parse_bind(spec)
                try:
                    fd = self._open(src)
                except OSError as e:
                    raise RuripyError(
                        f"bind source {src} cannot be used: {e.strerror}; check the path."
                    ) from None
                self.binds.append((fd, dst, ro, stat.S_ISDIR(os.fstat(fd).st_mode)))
            if cfg.get("net", "host") == "host":
                try:
                    with open("/etc/resolv.conf", "rb") as f:
                        self.resolv = f.read(65536)
                except OSError:
                    self.resolv = None
        except BaseException:
            self.close()
            raise

    def _open(self, path: str) -> int:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        self.fds.append(fd)
        self.paths[fd] = path
        return fd

    def reopen(self) -> None:
        """In the container's new mount namespace: open every host file again by path.

        A bind mount's source must be a mount of the caller's namespace, so the fds opened
        on the host cannot be used; each new fd must be the very same file (device, inode).
        """
        remap = {}
        for fd, path in self.paths.items():
            try:
                new = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError as e:
                raise RuripyError(
                    f"{path} disappeared while the container started: {e.strerror}."
                ) from None
            a, b = os.fstat(fd), os.fstat(new)
            if (a.st_dev, a.st_ino, a.st_mode, a.st_rdev) != (
                b.st_dev,
                b.st_ino,
                b.st_mode,
                b.st_rdev,
            ):
                os.close(new)
                raise RuripyError(f"{path} was replaced while the container started; try again.")
            remap[fd] = new
        for fd in remap:
            os.close(fd)
        self.fds = list(remap.values())
        self.paths = {remap[fd]: p for fd, p in self.paths.items()}
        self.dev = {n: remap[fd] for n, fd in self.dev.items()}
        self.binds = [(remap[fd], dst, ro, d) for fd, dst, ro, d in self.binds]

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


def parse_bind(spec: str) -> tuple[str, str, bool]:
    parts = spec.split(":")
    ro = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        ro = parts[2] == "ro"
        parts = parts[:2]
    if len(parts) != 2 or not parts[0].startswith("/") or not parts[1].startswith("/"):
        raise RuripyError(f"invalid --bind {spec!r}: use /host/path:/container/path[:ro].")
    return parts[0], parts[1], ro


fd_path = inroot.fd_path


def _mount_on(fd: int, source, fstype, flags: int = 0, data=None) -> None:
    syscalls.mount(source, fd_path(fd), fstype, flags, data)


def _reopen(rootfd: int, path: str, flags: int = os.O_PATH) -> int:
    return inroot.resolve(rootfd, path, flags)


def _check_fs(fd: int, magic: int, what: str) -> None:
    if syscalls.fstatfs_type(fd) != magic:
        raise RuripyError(f"{what} is not the filesystem ruripy mounted there; refusing to go on.")


def _special_dirs(rootfd: int) -> None:
    """proc, sys and dev must be real folders (or absent); never follow them (P0-M1)."""
    for d in ("proc", "sys", "dev"):
        try:
            st = os.stat(d, dir_fd=rootfd, follow_symlinks=False)
        except FileNotFoundError:
            os.mkdir(d, 0o755, dir_fd=rootfd)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise RuripyError(
                f"the container's /{d} is not a folder (a symlink or a file); "
                "refusing to start, it could point outside the rootfs."
            )


def _root_mount(cfg: dict) -> int:
    rootfs = cfg["rootfs"]
    flags = 0 if cfg["rootless"] else MS_NODEV
    if cfg.get("lower"):
        opts = f"lowerdir={cfg['lower']},upperdir={cfg['upper']},workdir={cfg['work']}"
        if cfg["rootless"]:
            opts += ",userxattr"
        syscalls.mount("overlay", rootfs, "overlay", flags, opts)
        return inroot.open_root(rootfs)
    syscalls.mount(rootfs, rootfs, None, MS_BIND | MS_REC)
    fd = inroot.open_root(rootfs)
    if not cfg["rootless"]:
        syscalls.mount_setattr(fd, syscalls.MOUNT_ATTR_NODEV)
    return fd


def _proc(rootfd: int) -> None:
    fd = _reopen(rootfd, "/proc", O_PATHDIR)
    _mount_on(fd, "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.close(fd)
    fd = _reopen(rootfd, "/proc", O_PATHDIR)
    try:
        _check_fs(fd, syscalls.PROC_SUPER_MAGIC, "/proc")
        if os.fstat(fd).st_ino != 1:
            raise RuripyError("/proc is not a procfs root; refusing to go on.")
    finally:
        os.close(fd)


def _dev(rootfd: int, cfg: dict, host: HostResources) -> None:
    fd = _reopen(rootfd, "/dev", O_PATHDIR)
    _mount_on(fd, "tmpfs", "tmpfs", MS_NOSUID | syscalls.MS_STRICTATIME, "mode=755,size=65536k")
    os.close(fd)
    dev = _reopen(rootfd, "/dev", O_PATHDIR)
    try:
        _check_fs(dev, syscalls.TMPFS_MAGIC, "/dev")
        for name, (major, minor) in DEVICES.items():
            if name not in host.dev:
                continue
            if cfg["rootless"]:
                f = os.open(
                    name,
                    os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC,
                    0o666,
                    dir_fd=dev,
                )
                try:
                    syscalls.mount(fd_path(host.dev[name]), fd_path(f), None, MS_BIND)
                finally:
                    os.close(f)
                f = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev)
                try:
                    syscalls.mount_setattr(
                        f, syscalls.MOUNT_ATTR_NOSUID | syscalls.MOUNT_ATTR_NOEXEC
                    )
                finally:
                    os.close(f)
            else:
                os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dev)
                os.chmod(name, 0o666, dir_fd=dev)
        os.mkdir("pts", 0o755, dir_fd=dev)
        pts = os.open("pts", O_PATHDIR | os.O_CLOEXEC, dir_fd=dev)
        try:
            try:
                _mount_on(
                    pts,
                    "devpts",
                    "devpts",
                    MS_NOSUID | MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620,gid=5",
                )
            except OSError:  # gid 5 is not mapped with a single-id map
                _mount_on(
                    pts,
                    "devpts",
                    "devpts",
                    MS_NOSUID | MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620",
                )
        finally:
            os.close(pts)
        os.symlink("pts/ptmx", "ptmx", dir_fd=dev)
        for sub, fstype, data in (
            ("shm", "tmpfs", "mode=1777,size=65536k"),
            ("mqueue", "mqueue", None),
        ):
            os.mkdir(sub, 0o755, dir_fd=dev)
            f = os.open(sub, O_PATHDIR | os.O_CLOEXEC, dir_fd=dev)
            try:
                _mount_on(f, fstype, fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, data)
            except OSError:
                if fstype != "mqueue":
                    raise
            finally:
                os.close(f)
        for link, target in (
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ):
            os.symlink(target, link, dir_fd=dev)
    finally:
        os.close(dev)


def _sys(rootfd: int, cfg: dict) -> None:
    fd = _reopen(rootfd, "/sys", O_PATHDIR)
    ro = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    if cfg["rootless"] and cfg.get("net", "host") != "none":
        # sysfs needs a network namespace of our own: bind the host's, read-only throughout.
        syscalls.mount("/sys", fd_path(fd), None, MS_BIND | MS_REC)
        os.close(fd)
        fd = _reopen(rootfd, "/sys", O_PATHDIR)
        syscalls.mount_setattr(
            fd,
            syscalls.MOUNT_ATTR_RDONLY
            | syscalls.MOUNT_ATTR_NOSUID
            | syscalls.MOUNT_ATTR_NODEV
            | syscalls.MOUNT_ATTR_NOEXEC,
            recursive=True,
        )
    else:
        _mount_on(fd, "sysfs", "sysfs", ro)
        os.close(fd)
        fd = _reopen(rootfd, "/sys", O_PATHDIR)
    try:
        _check_fs(fd, syscalls.SYSFS_MAGIC, "/sys")
    finally:
        os.close(fd)


def _thermal_throttle(rootfd: int) -> tuple[str, ...]:
    """Each CPU's thermal_throttle folder (a side channel Docker masks too)."""
    try:
        fd = _reopen(rootfd, "/sys/devices/system/cpu", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return ()
    try:
        names = os.listdir(fd)
    finally:
        os.close(fd)
    return tuple(
        f"sys/devices/system/cpu/{n}/thermal_throttle"
        for n in sorted(names)
        if n.startswith("cpu") and n[3:].isdigit()
    )


def _masks(rootfd: int, host: HostResources, unmask: bool = False) -> None:
    """Masks (skipped with --unmask), then the read-only paths (always: with /proc/sys
    writable, a privileged container's root could set the host's core_pattern)."""
    null = host.dev["null"]
    proc_magic = syscalls.PROC_SUPER_MAGIC
    masks = () if unmask else MASKED_FILES + MASKED_DIRS + _thermal_throttle(rootfd)
    for path in masks + READ_ONLY:
        try:
            fd = _reopen(rootfd, "/" + path, os.O_PATH | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        try:
            if path.startswith("proc/") and syscalls.fstatfs_type(fd) != proc_magic:
                raise RuripyError(f"/{path} is not on procfs; refusing to go on.")
            if path in READ_ONLY:
                syscalls.mount(fd_path(fd), fd_path(fd), None, MS_BIND | MS_REC)
                os.close(fd)
                fd = _reopen(rootfd, "/" + path, os.O_PATH | os.O_NOFOLLOW)
                syscalls.mount_setattr(
                    fd,
                    syscalls.MOUNT_ATTR_RDONLY
                    | syscalls.MOUNT_ATTR_NOSUID
                    | syscalls.MOUNT_ATTR_NODEV
                    | syscalls.MOUNT_ATTR_NOEXEC,
                    recursive=True,
                )
            elif stat.S_ISDIR(os.fstat(fd).st_mode):
                _mount_on(
                    fd,
                    "tmpfs",
                    "tmpfs",
                    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    "mode=755,size=4k",
                )
            else:
                syscalls.mount(fd_path(null), fd_path(fd), None, MS_BIND)
        except OSError as e:
            raise RuripyError(f"could not mask /{path}: {e.strerror}.") from None
        finally:
            os.close(fd)


def _binds(rootfd: int, host: HostResources) -> None:
    for src, dst, ro, is_dir in host.binds:
        try:
            if is_dir:
                target = inroot.mkdirs(rootfd, dst)
            else:
                parent, base = inroot.resolve_parent(rootfd, dst, create=True)
                try:
                    try:
                        f = os.open(
                            base,
                            os.O_CREAT | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC,
                            0o644,
                            dir_fd=parent,
                        )
                        os.close(f)
                    except IsADirectoryError:
                        pass
                    target = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                finally:
                    os.close(parent)
            try:
                syscalls.mount(fd_path(src), fd_path(target), None, MS_BIND | MS_REC)
            finally:
                os.close(target)
            if ro:
                fd = _reopen(rootfd, dst)
                try:
                    syscalls.mount_setattr(fd, syscalls.MOUNT_ATTR_RDONLY, recursive=True)
                finally:
                    os.close(fd)
        except OSError as e:
            raise RuripyError(f"cannot bind onto {dst} in the container: {e.strerror}.") from None


def _resolv_conf(rootfd: int, content: bytes) -> None:
    """Give the container the host's DNS servers when its resolv.conf is missing or a link."""
    try:
        parent, base = inroot.resolve_parent(rootfd, "/etc/resolv.conf")
    except OSError:
        return
    try:
        try:
            st = os.stat(base, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_size > 0:
                return
            if not stat.S_ISREG(st.st_mode):
                os.unlink(base, dir_fd=parent)
        except FileNotFoundError:
            pass
        f = os.open(
            base,
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
            dir_fd=parent,
        )
        try:
            os.write(f, content)
        finally:
            os.close(f)
    except OSError:
        pass  # a read-only or odd /etc: the container keeps what it has
    finally:
        os.close(parent)


def build_root(cfg: dict, host: HostResources) -> None:
    """In the new mount namespace (pid 1): assemble the root and pivot into it."""
    syscalls.mount(None, "/", None, MS_REC | syscalls.MS_SLAVE)
    host.reopen()
    rootfd = _root_mount(cfg)
    try:
        _special_dirs(rootfd)
        _proc(rootfd)
        _dev(rootfd, cfg, host)
        _sys(rootfd, cfg)
        _masks(rootfd, host, bool(cfg.get("unmask")))
        _binds(rootfd, host)
        if host.resolv is not None and not cfg.get("read_only"):
            _resolv_conf(rootfd, host.resolv)
        if cfg.get("read_only"):
            syscalls.mount_setattr(rootfd, syscalls.MOUNT_ATTR_RDONLY)
        os.fchdir(rootfd)
        syscalls.pivot_root(".", ".")
        syscalls.umount2(".", syscalls.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(rootfd)
