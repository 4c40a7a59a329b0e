"""Foreign-architecture root filesystems through qemu-user and binfmt_misc.

The kernel runs a foreign ELF binary through the interpreter a binfmt_misc entry names.
ruripy registers entries with the F flag: the kernel opens the interpreter (the host's
static qemu) when the entry is written, on the host side, so it never has to exist inside
the rootfs and nothing in the rootfs can replace it (security.md P2, images.md 5.7).

- privileged (root): the host's own binfmt_misc is used. If no working entry exists (one
  that is enabled, matches the architecture and has the F flag), ruripy mounts binfmt_misc
  on /proc/sys/fs/binfmt_misc when needed and registers `qemu-ARCH` host-wide; it stays
  registered afterwards, as `update-binfmts` would leave it.
- rootless, Linux 6.7+: pid 1, in the container's new user and mount namespaces and before
  pivot_root, makes a binfmt_misc instance of the container's own user namespace as a
  detached mount (fsopen/fsmount: no path anywhere), registers qemu there and keeps the
  mount fd open for the container's lifetime (closing the last reference drops the
  entries). No host setup, whatever the host has registered. Nothing inside can reach it:
  no mount of it exists in the container's tree (P0-M10). Older kernels: the host's entry
  if one works, else a message saying what to install.
- proot: `proot -q QEMU` (proot loads ELF files itself, so binfmt_misc is no use to it).

The architecture is `--arch` when given, else read from the ELF header of the rootfs's
shell (through an overlay's layers).

Standard library only; nothing here runs a program.
"""

import errno
import os
import stat

from ..errors import RuripyError
from . import inroot, syscalls

HOST_MOUNT = "/proc/sys/fs/binfmt_misc"

# Debian architecture name -> (qemu name, magic, mask): the ELF header patterns of
# qemu's scripts/qemu-binfmt-conf.sh (also in Debian's /usr/lib/binfmt.d/qemu-*.conf).
_ELF64_LE = "7f454c460201010000000000000000000200"
_ELF32_LE = "7f454c460101010000000000000000000200"
_MASK_STD = "ffffffffffffff00fffffffffffffffffeffffff"
QEMU = {
    "arm64": ("aarch64", _ELF64_LE + "b700", _MASK_STD),
    "armhf": ("arm", _ELF32_LE + "2800", _MASK_STD),
    "armel": ("arm", _ELF32_LE + "2800", _MASK_STD),
    "amd64": ("x86_64", _ELF64_LE + "3e00", "fffffffffffefe00fffffffffffffffffeffffff"),
    "i386": ("i386", _ELF32_LE + "0300", "fffffffffffefe00fffffffffffffffffeffffff"),
    "riscv64": ("riscv64", _ELF64_LE + "f300", _MASK_STD),
    "ppc64el": ("ppc64le", _ELF64_LE + "1500", "fffffffffffffffcfffffffffffffffffeffff00"),
    "s390x": (
        "s390x",
        "7f454c46020201000000000000000000000200" + "16",
        "fffffffffffffffcfffffffffffffffffffeffff",
    ),
    "loong64": ("loongarch64", _ELF64_LE + "0201", "fffffffffffffffc00fffffffffffffffeffffff"),
}
# os.uname().machine -> Debian name; and what each host runs without emulation.
_HOST = {
    "x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "armv8l": "armhf",
    "armv6l": "armel", "i686": "i386", "i586": "i386", "riscv64": "riscv64",
    "ppc64le": "ppc64el", "s390x": "s390x", "loongarch64": "loong64",
}  # fmt: skip
_NATIVE_TOO = {"amd64": ("i386",), "arm64": ("armhf", "armel")}
# ELF (e_machine, 64-bit) -> Debian name.
_ELF_MACHINES = {
    (0x3E, True): "amd64", (0x03, False): "i386", (0xB7, True): "arm64",
    (0x28, False): "armhf", (0xF3, True): "riscv64", (0x15, True): "ppc64el",
    (0x16, True): "s390x", (0x102, True): "loong64",
}  # fmt: skip
_PROBES = ("/bin/sh", "/bin/busybox", "/usr/bin/env", "/bin/ls", "/sbin/init")
FLAGS = "POF"  # preserve argv[0], open the binary for the interpreter, fix (open) it now

_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432  # the same on every architecture
_FSCONFIG_CMD_CREATE = 6


def host_arch() -> str:
    m = os.uname().machine
    return _HOST.get(m, m)


def runs_natively(arch: str) -> bool:
    host = host_arch()
    return arch == host or arch in _NATIVE_TOO.get(host, ())


def elf_arch(header: bytes) -> str | None:
    """The Debian architecture of an ELF header, or None when it is not one ruripy knows."""
    if len(header) < 20 or header[:4] != b"\x7fELF" or header[4] not in (1, 2):
        return None
    order = "little" if header[5] == 1 else "big"
    machine = int.from_bytes(header[18:20], order)
    arch = _ELF_MACHINES.get((machine, header[4] == 2))
    if arch == "armhf" and len(header) >= 40:
        flags = int.from_bytes(header[36:40], order)
        if not flags & 0x400:  # EF_ARM_ABI_FLOAT_HARD
            arch = "armel"
    if arch == "ppc64el" and order != "little":
        return None
    return arch


def rootfs_arch(roots: list[str] | str) -> str | None:
    """The architecture of a root folder, from the ELF header of its shell (read in-root).

    `roots` may be the layers of an overlay, upper first.
    """
    for path in _PROBES:
        for root in [roots] if isinstance(roots, str) else roots:
            arch = _probe(root, path)
            if arch:
                return arch
    return None


def _probe(rootfs: str, path: str) -> str | None:
    """The architecture of the ELF file `path` inside the root `rootfs`, if it is one."""
    try:
        rootfd = inroot.open_root(rootfs)
    except OSError:
        return None
    try:
        fd = inroot.resolve(rootfd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    finally:
        os.close(rootfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return elf_arch(os.pread(fd, 64, 0))
    except OSError:
        return None
    finally:
        os.close(fd)


def _search_path() -> list[str]:
    dirs = [d for d in (os.environ.get("PATH") or "").split(":") if d.startswith("/")]
    return dirs + ["/usr/bin", "/usr/local/bin", "/bin"]


def qemu_path(arch: str) -> str:
    """The host's qemu-user binary for `arch` (the static build first)."""
    q = QEMU[arch][0]
    for d in _search_path():
        for name in (f"qemu-{q}-static", f"qemu-{q}"):
            p = os.path.join(d, name)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return os.path.realpath(p)
    raise RuripyError(
        f"running a {arch} rootfs on this {host_arch()} host needs qemu-user: install it "
        f"('sudo apt-get install qemu-user-static', or 'pkg install qemu-user-{q}' on Termux)."
    )


def registration(arch: str, interpreter: str, name: str | None = None) -> str:
    """The line written to binfmt_misc's register file."""
    q, magic, mask = QEMU[arch]
    if ":" in interpreter or "\n" in interpreter:
        raise RuripyError(f"the qemu path {interpreter} contains ':'; install it elsewhere.")

    def esc(hexs: str) -> str:
        return "".join("\\x" + hexs[i : i + 2] for i in range(0, len(hexs), 2))

    return f":{name or 'qemu-' + q}:M:0:{esc(magic)}:{esc(mask)}:{interpreter}:{FLAGS}"


def _entry_matches(text: str, arch: str) -> tuple[bool, bool]:
    """(matches `arch`, works inside a container) for the text of one binfmt_misc entry."""
    fields: dict = {}
    lines = text.splitlines()
    enabled = bool(lines) and lines[0].strip() == "enabled"
    for line in lines[1:]:
        k, _, v = line.partition(" ")
        fields[k.rstrip(":")] = v.strip()
    try:
        offset = int(fields.get("offset", "0"))
        magic = bytes.fromhex(fields["magic"])
        mask = bytes.fromhex(fields.get("mask") or "ff" * len(magic))
    except (KeyError, ValueError):
        return False, False
    sample = bytes.fromhex(QEMU[arch][1])
    if offset < 0 or offset + len(magic) > len(sample) or len(mask) != len(magic):
        return False, False
    for i, m in enumerate(magic):
        if sample[offset + i] & mask[i] != m & mask[i]:
            return False, False
    return True, enabled and "F" in fields.get("flags", "")


def host_entry(arch: str, mount: str = HOST_MOUNT) -> tuple[str | None, bool]:
    """(name of the host's first entry matching `arch`, whether it works in a container).

    A container can use an entry that is enabled and has the F flag (its interpreter is
    already open); without F the kernel would look the interpreter up inside the rootfs.
    """
    try:
        with open(os.path.join(mount, "status")) as f:
            if f.read().strip() != "enabled":
                return None, False
        names = sorted(os.listdir(mount))
    except OSError:
        return None, False
    for n in names:
        if n in ("register", "status"):
            continue
        try:
            with open(os.path.join(mount, n)) as f:
                text = f.read(4096)
        except OSError:
            continue
        matches, works = _entry_matches(text, arch)
        if matches:
            return n, works
    return None, False


def _mounted(path: str) -> bool:
    return os.path.exists(os.path.join(path, "register"))


def ensure_host(arch: str) -> str:
    """As root: make sure the host runs `arch` binaries in containers; the entry's name."""
    name, works = host_entry(arch)
    if works:
        return name
    interp = qemu_path(arch)
    if not _mounted(HOST_MOUNT):
        from . import syscalls

        try:
            syscalls.mount(
                "binfmt_misc", HOST_MOUNT, "binfmt_misc",
                syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC,
            )  # fmt: skip
        except OSError as e:
            raise RuripyError(
                f"running a {arch} rootfs needs binfmt_misc, which could not be mounted on "
                f"{HOST_MOUNT} ({e.strerror}); load it with 'modprobe binfmt_misc' and retry."
            ) from None
        name, works = host_entry(arch)
        if works:
            return name
    q = QEMU[arch][0]
    # An entry of that name without the F flag cannot be replaced in place: add ours, which
    # the kernel consults first (newest entries come first).
    new = f"qemu-{q}"
    if os.path.exists(os.path.join(HOST_MOUNT, new)):
        new = f"ruripy-qemu-{q}"
    try:
        _write(os.path.join(HOST_MOUNT, "register"), registration(arch, interp, new))
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise RuripyError(
                f"could not register qemu-{q} in binfmt_misc: {e.strerror}; register it with "
                "'sudo update-binfmts --enable' (package binfmt-support) and retry."
            ) from None
    name, works = host_entry(arch)
    if not works:
        raise RuripyError(
            f"binfmt_misc on this host has no working entry for {arch} binaries even after "
            f"registering qemu-{q}; check {HOST_MOUNT} ('cat {HOST_MOUNT}/status')."
        )
    return name


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def plan(arch: str | None, rootfs: list[str] | str, backend: str) -> dict:
    """Host side, before a start: what the container needs to run `arch` (None: detect).

    {} when its binaries run natively or through a working host entry (registered now for
    a root caller); {"binfmt": line} for pid 1 to register in the rootless container's user
    namespace; {"qemu": path} for `proot -q` (proot loads ELF files itself).
    """
    arch = arch or rootfs_arch(rootfs)
    if not arch or arch not in QEMU or runs_natively(arch):
        return {}
    if backend == "proot":
        return {"qemu": qemu_path(arch)}  # proot loads ELF files itself: binfmt_misc is no use
    if backend == "privileged":
        ensure_host(arch)
        return {}
    if backend == "rootless" and private_supported():
        # The container's own entry: no host setup, whatever the host has registered.
        return {"binfmt": registration(arch, qemu_path(arch)), "binfmt_arch": arch}
    _, works = host_entry(arch)
    if works:
        return {}
    raise RuripyError(_private_failed(arch, f"Linux {os.uname().release.split('-')[0]}"))


def private_supported() -> bool:
    """Whether this kernel gives a user namespace its own binfmt_misc (Linux 6.7+)."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 7)


_libc = syscalls.libc  # its syscall returns a long (syscalls sets its restype)


def _sys(nr: int, *args) -> int:
    ret = _libc.syscall(syscalls.c_long(nr), *args)
    if ret < 0:
        e = syscalls.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def register_private(line: str, arch: str = "") -> int:
    """In pid 1 (new user + mount namespace, before pivot_root): a binfmt_misc instance of
    this user namespace with `line` registered. Returns the detached mount's fd: keep it
    open while the container lives; the entries go away with the last reference."""
    try:
        fs = _sys(_SYS_FSOPEN, syscalls.c_char_p(b"binfmt_misc"), syscalls.c_uint(1))
    except OSError as e:
        raise RuripyError(_private_failed(arch, e.strerror)) from None
    try:
        _sys(
            _SYS_FSCONFIG, syscalls.c_int(fs), syscalls.c_uint(_FSCONFIG_CMD_CREATE), None, None, 0
        )
        mnt = _sys(_SYS_FSMOUNT, syscalls.c_int(fs), syscalls.c_uint(1), syscalls.c_uint(0))
    except OSError as e:
        raise RuripyError(_private_failed(arch, e.strerror)) from None
    finally:
        os.close(fs)
    try:
        fd = os.open("register", os.O_WRONLY | os.O_CLOEXEC, dir_fd=mnt)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as e:
        os.close(mnt)
        raise RuripyError(_private_failed(arch, e.strerror)) from None
    return mnt


def _private_failed(arch: str, why: str) -> str:
    what = f"a {arch} rootfs" if arch else "this rootfs"
    return (
        f"running {what} rootless needs qemu registered in binfmt_misc, and this kernel "
        f"gives no private registration ({why}; Linux 6.7+ does); ask root to "
        "run 'sudo apt-get install qemu-user-static binfmt-support' (registers qemu with "
        "the F flag host-wide), or use --backend proot."
    )
