"""Writing a tree out as a tar (export), and copying a host folder into a new rootfs.

`export` walks the tree through folder fds, never following a symlink, and records what a
rootfs needs: numeric owners, modes with setuid/setgid/sticky, symlinks, hard links (one
file, then links to it), device nodes, FIFOs, ns mtimes (pax), `user.*` and
`security.capability` xattrs. Sockets are skipped; a folder on another filesystem (a mount)
is written as an empty folder.

`copy_tree` streams an export of the source through the extractor (extract.py), so a copy
is written by exactly the same in-root code as an unpacked image.
"""

import os
import stat
import tarfile
import threading

from ..errors import RuripyError
from .extract import extract

SUFFIXES = {
    ".tar": None,
    ".tar.gz": "gz",
    ".tgz": "gz",
    ".tar.xz": "xz",
    ".txz": "xz",
    ".tar.zst": "zst",
    ".tzst": "zst",
}
_KEEP_XATTRS = ("user.",)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_COPY = 1 << 20


def compression_for(filename: str) -> str | None:
    """The compression an export to `filename` uses, from its suffix (None: plain tar)."""
    low = filename.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if low.endswith(suffix):
            return SUFFIXES[suffix]
    raise RuripyError(
        f"{filename}: unknown archive suffix; use .tar, .tar.gz (.tgz), .tar.xz (.txz) "
        "or .tar.zst (.tzst)."
    )


def export(rootfs: str, out, compression: str | None, *, overlay: bool = False) -> dict:
    """Write the tree at `rootfs` as a tar to the binary file object `out` (not closed).

    `compression` is None, "gz", "xz" or "zst". `overlay` also keeps `trusted.overlay.*`
    xattrs (copying an overlay upper folder). Returns counts: entries, bytes, skipped.
    """
    if compression not in (None, "gz", "xz", "zst"):
        raise RuripyError(f"unknown compression {compression!r}: use gz, xz or zst.")
    sink = _compressor(out, compression)
    w = _Writer(sink, overlay)
    try:
        rootfd = os.open(rootfs, _DIR)
    except OSError as e:
        raise RuripyError(f"cannot read {rootfs}: {e.strerror}.") from None
    try:
        st = os.fstat(rootfd)
        w.dev = st.st_dev
        w.add_dir(rootfd, ".", st)
        w.finish()
    finally:
        os.close(rootfd)
    if sink is not out:
        sink.close()  # writes the compressed stream's end; `out` stays open
    out.flush()
    return w.stats


def copy_tree(src: str, rootfs: str, *, rootless: bool) -> dict:
    """Copy the host folder `src` into a new rootfs folder `rootfs` (created if missing).

    Owners, modes, setuid bits, symlinks, hard links, devices (by the extractor's rules),
    FIFOs, mtimes and xattrs are kept; an overlay upper folder keeps its whiteouts.
    """
    rfd, wfd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(wfd, "wb", buffering=_COPY) as out:
                export(src, out, None, overlay=True)
        except BaseException as e:  # reported by the consumer below
            failure.append(e)

    thread = threading.Thread(target=produce, name="ruripy-copy-export", daemon=True)
    thread.start()
    try:
        with os.fdopen(rfd, "rb", buffering=_COPY) as f:
            stats = extract(
                f,
                rootfs,
                rootless=rootless,
                max_bytes=1 << 62,
                max_entries=1 << 62,
                label=src,
                keep_overlay=True,
            )
    except RuripyError:
        thread.join()  # the read end is closed: the writer stops with EPIPE
        if failure and isinstance(failure[0], RuripyError):
            raise failure[0] from None
        raise
    thread.join()
    if failure:
        raise failure[0]
    return stats


def _compressor(out, compression: str | None):
    if compression is None:
        return out
    if compression == "gz":
        import gzip

        return gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0)
    if compression == "xz":
        import lzma

        return lzma.LZMAFile(out, "wb", preset=6)
    import zstandard

    return zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False)


class _Writer:
    """tar members written straight to the sink: TarInfo makes each header, this the rest."""

    def __init__(self, sink, overlay: bool) -> None:
        self.sink = sink
        self.overlay = overlay
        self.buf = bytearray()
        self.offset = 0
        self.dev = 0
        self.links: dict[tuple[int, int], str] = {}
        self.stats = {"entries": 0, "bytes": 0, "skipped": 0}

    def _write(self, data) -> None:
        self.buf += data
        self.offset += len(data)
        if len(self.buf) >= _COPY:
            self.sink.write(self.buf)
            self.buf = bytearray()

    def finish(self) -> None:
        """The end-of-archive blocks, padded to a whole record like GNU tar does."""
        self._write(bytes(2 * tarfile.BLOCKSIZE))
        self._write(bytes(-self.offset % tarfile.RECORDSIZE))
        if self.buf:
            self.sink.write(self.buf)
            self.buf = bytearray()

    def _info(self, name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid = st.st_uid
        ti.gid = st.st_gid
        ti.uname = ti.gname = ""
        ti.mtime = st.st_mtime_ns // 1_000_000_000
        frac = st.st_mtime_ns % 1_000_000_000
        if frac:
            ti.pax_headers["mtime"] = f"{ti.mtime}.{frac:09d}"
        return ti

    def _xattrs(self, ti: tarfile.TarInfo, target) -> None:
        try:
            names = os.listxattr(target)
        except OSError:
            return
        for n in names:
            if not (
                n.startswith(_KEEP_XATTRS)
                or n == "security.capability"
                or (self.overlay and n.startswith("trusted.overlay."))
            ):
                continue
            try:
                value = os.getxattr(target, n)
            except OSError:
                continue
            ti.pax_headers["SCHILY.xattr." + n] = value.decode("utf-8", "surrogateescape")

    def _add(self, ti: tarfile.TarInfo, fd: int | None = None) -> None:
        self._write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        self.stats["entries"] += 1
        if fd is None:
            return
        left = ti.size
        while left:
            chunk = os.read(fd, min(left, _COPY))
            if not chunk:
                raise RuripyError(f"{ti.name} shrank while it was being exported; try again.")
            self._write(chunk)
            left -= len(chunk)
        self._write(bytes(-ti.size % tarfile.BLOCKSIZE))
        self.stats["bytes"] += ti.size

    def add_dir(self, dfd: int, name: str, st: os.stat_result) -> None:
        """Write folder `dfd` (named `name` in the tar) and, on the same filesystem, its tree."""
        ti = self._info(name, st, tarfile.DIRTYPE)  # tobuf adds the trailing "/"
        self._xattrs(ti, dfd)
        self._add(ti)
        if st.st_dev != self.dev:
            return  # a mount point: its folder only, like tar --one-file-system
        with os.scandir(dfd) as it:
            names = sorted(e.name for e in it)
        for n in names:
            self._entry(dfd, f"{name}/{n}", n)

    def _entry(self, dfd: int, name: str, base: str) -> None:
        try:
            st = os.stat(base, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return  # gone while walking
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            fd = os.open(base, _DIR, dir_fd=dfd)
            try:
                self.add_dir(fd, name, os.fstat(fd))
            finally:
                os.close(fd)
        elif stat.S_ISREG(mode):
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self.links.get(key)
                if first is not None:
                    ti = self._info(name, st, tarfile.LNKTYPE)
                    ti.linkname = first
                    self._add(ti)
                    return
                self.links[key] = name
            fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                fst = os.fstat(fd)
                ti = self._info(name, fst, tarfile.REGTYPE)
                ti.size = fst.st_size
                self._xattrs(ti, fd)
                self._add(ti, fd)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            ti = self._info(name, st, tarfile.SYMTYPE)
            ti.linkname = os.readlink(base, dir_fd=dfd)
            self._add(ti)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti = self._info(name, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
            ti.devmajor = os.major(st.st_rdev)
            ti.devminor = os.minor(st.st_rdev)
            self._add(ti)
        elif stat.S_ISFIFO(mode):
            self._add(self._info(name, st, tarfile.FIFOTYPE))
        else:
            self.stats["skipped"] += 1  # sockets: a tar cannot hold them
