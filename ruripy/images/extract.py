"""ruripy's own tar extractor: every member written through fds resolved inside the rootfs.

`tarfile` only parses (members in order, never `extract`/`extractall`); this module does each
filesystem operation itself (security.md 4.3, images.md 3.8):

* names are normalised (leading "/" stripped, `..` that would leave the root refused);
* parents are resolved in-root (ruripy.sandbox.inroot), so `var/run -> /run` followed by
  `var/run/x.pid` writes `<rootfs>/run/x.pid`, and no symlink ever leads outside;
* the final component is never followed: whatever is there (a symlink, a hard link, a folder
  of an earlier layer) is removed, then the new entry created with O_EXCL|O_NOFOLLOW;
* hard links only to regular files this same extraction (or a lower layer of the image) created;
* numeric owners, modes with setuid/setgid/sticky, ns mtimes; folder attributes at the end,
  deepest first; `user.*` xattrs, `security.capability` only when privileged;
* device nodes: privileged creates a short allow-list under dev/, everything else is skipped
  and counted (the caller prints one warning);
* OCI whiteouts and opaque folders on request (image-spec "Applying Changesets");
* budgets on file data and member count.

The caller extracts into a staging folder and renames it, so on error this just raises;
a full disk (ENOSPC, EDQUOT) is raised as the OSError itself, for the caller to explain.
"""

import errno
import itertools
import os
import queue
import shutil
import stat
import tarfile
import threading
from collections import OrderedDict

from ..errors import RuripyError, disk_full
from ..sandbox import inroot

FORMATS = "gzip, xz, zstd, bzip2 or plain"
ALLOWED_DEVICES = frozenset({(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)})
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_NAME = 255
MAX_PATH = 4096
MAX_LINK = 4095
CHUNK = 1 << 20
STAT_KEYS = (
    "entries",
    "bytes",
    "files",
    "dirs",
    "symlinks",
    "hardlinks",
    "fifos",
    "devices",
    "skipped_devices",
    "skipped_other",
    "whiteouts",
    "opaque",
    "xattrs",
    "xattrs_dropped",
    "xattr_errors",
    "owner_errors",
)
_READ_AHEAD = 8  # chunks of CHUNK bytes decompressed ahead of the writer
_CACHE_SIZE = 64  # parent folder fds kept open; archives list folders together

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAGIC = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
)


class _Corrupt(Exception):
    """Reading the archive failed (decompression error, truncation, broken header)."""


def extract(
    stream,
    rootfs: str,
    *,
    rootless: bool,
    whiteouts: bool = False,
    max_bytes: int = 64 << 30,
    max_entries: int = 2_000_000,
    progress=None,
    label: str | None = None,
    keep_overlay: bool = False,
    trash: "Trash | None" = None,
    created: set | None = None,
) -> dict:
    """Extract the tar read sequentially from `stream` (never seeked) into folder `rootfs`.

    The compression (gzip, xz, zstd, bzip2 or none) is found from the first bytes.
    `whiteouts` applies OCI whiteout markers (for image layers). `progress(entries, bytes)`
    is called now and then. `label` names the archive in errors (default: the stream's
    name). `keep_overlay` (copying an overlay upper folder) also keeps its whiteouts (0:0
    character devices) and, privileged, its `trusted.overlay.*` xattrs. With `trash`,
    what the archive replaces or whites out is moved there and deleted in the background.
    `created` holds the regular files (device, inode) extracted so far, and gains this
    archive's: the layers of one image share it, so a hard link may name a file of a lower
    layer (as umoci and containerd allow), never one that was there before.
    Returns counts: entries, bytes, files, dirs, symlinks, hardlinks, fifos, devices,
    skipped_devices, skipped_other, whiteouts, opaque, xattrs, xattrs_dropped, xattr_errors,
    owner_errors.
    """
    if label is None:
        name = getattr(stream, "name", None)
        label = name if isinstance(name, str) else "the archive"
    try:
        x = _Extractor(rootfs, label, rootless, whiteouts, max_bytes, max_entries, progress)
        if created is not None:
            x.created = created
    except OSError as e:
        if disk_full(e):
            raise
        raise RuripyError(f"cannot unpack {label} into {rootfs}: {e.strerror}.") from None
    x.keep_overlay = keep_overlay
    x.trash = trash
    reader = None
    try:
        inner, kind = _decompressed(stream, label)
        reader = _Direct(inner) if kind is None and _is_file(stream) else _Reader(inner)
        try:
            tf = tarfile.open(fileobj=reader, mode="r:", tarinfo=_Info)
        except tarfile.ReadError:
            if kind and not reader.total:  # zstd ends quietly when its first frame is cut
                raise _Corrupt(f"the {kind} data ends before any tar data") from None
            raise RuripyError(f"{label} is not a tar archive ({FORMATS}).") from None
        x.run(tf)
        while reader.read(CHUNK):  # the end blocks and padding: hashing readers want them
            pass
    except _Corrupt as e:
        raise RuripyError(f"{label} is truncated or corrupt ({e}).") from None
    except tarfile.TarError as e:  # ReadError, HeaderError, StreamError (a bad sparse map)
        raise RuripyError(f"{label} is truncated or corrupt ({e}).") from None
    finally:
        if reader is not None:
            reader.close()
        x.close()
    return x.stats


# --- reading ------------------------------------------------------------------------------


class _Prefixed:
    """The bytes already read for sniffing, then the rest of the stream."""

    def __init__(self, head: bytes, stream) -> None:
        self.head = head
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                out, self.head = self.head + self.stream.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.stream.read(n)

    def readable(self) -> bool:
        return True


class _Sequential:
    """What tarfile needs of a file in "r:" mode, over a stream read once, in order.

    `read(n)` gives n bytes unless the data ends; `seek` only skips forward (tarfile
    never goes back when the members are read in order). Member data is then read in
    place: stream mode ("r|") would copy it through tarfile's 10 KiB buffer.
    """

    position = 0

    def _read1(self, n: int) -> bytes:
        raise NotImplementedError

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = CHUNK
        out = self._read1(n)
        if len(out) < n and out:
            parts = [out]
            got = len(out)
            while got < n:
                b = self._read1(n - got)
                if not b:
                    break
                parts.append(b)
                got += len(b)
            out = b"".join(parts)
        self.position += len(out)
        return out

    def tell(self) -> int:
        return self.position

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0 or pos < self.position:
            raise _Corrupt("the archive asks to go back, which a stream cannot")
        while self.position < pos and self.read(min(CHUNK, pos - self.position)):
            pass
        return self.position

    def readable(self) -> bool:
        return True


class _Direct(_Sequential):
    """The tar stream read in place: a plain tar in a regular file needs no thread."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.total = 0

    def _read1(self, n: int) -> bytes:
        try:
            b = self.inner.read(n)
        except Exception as e:
            raise _Corrupt(f"{type(e).__name__}: {e}") from e
        self.total += len(b)
        return b

    def close(self) -> None:
        pass


def _is_file(stream) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        return False


class _Reader(_Sequential):
    """The decompressed stream for tarfile, read ahead by a thread.

    Decompression (zlib, lzma, bz2 and zstd release the GIL) then overlaps with the writing,
    as `gzip -d | tar x` runs on two cores. Any failure while reading becomes _Corrupt.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.queue: queue.Queue = queue.Queue(_READ_AHEAD)
        self.stop = threading.Event()
        self.buf = b""
        self.pos = 0
        self.total = 0
        self.done = False
        self.thread = threading.Thread(target=self._pump, name="ruripy-unpack-read", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            while not self.stop.is_set():
                b = self.inner.read(CHUNK)
                self._put(b)
                if not b:
                    return
        except BaseException as e:  # EOFError, zlib/lzma/zstd errors, OSError from gzip
            self._put(e)

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _read1(self, n: int) -> bytes:
        if self.pos >= len(self.buf):
            if self.done:
                return b""
            item = self.queue.get()
            if isinstance(item, BaseException):
                self.done = True
                raise _Corrupt(f"{type(item).__name__}: {item}") from item
            if not item:
                self.done = True
                return b""
            self.buf, self.pos = item, 0
            self.total += len(item)
        if self.pos == 0 and n >= len(self.buf):
            self.pos = len(self.buf)
            return self.buf  # a whole chunk: no copy
        out = self.buf[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def close(self) -> None:
        """Stop the thread (it may be blocked on a full queue or in a read)."""
        self.stop.set()
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass
        self.thread.join(timeout=5)


def _is_tar_header(block: bytes) -> bool:
    if len(block) < 512:
        return False
    field = block[148:156].split(b"\0", 1)[0].strip()
    try:
        want = int(field, 8)
    except ValueError:
        return False
    total = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    return want == total


def _decompressed(stream, label: str) -> tuple:
    """(reader of the tar bytes, compression name or None); never seeks `stream`."""
    head = b""
    while len(head) < 512:
        b = stream.read(512 - len(head))
        if not b:
            break
        head += b
    if not head:
        raise RuripyError(f"{label} is empty, not a tar archive ({FORMATS}).")
    src = _Prefixed(head, stream)
    if _is_tar_header(head):
        return src, None
    kind = next((k for magic, k in _MAGIC if head.startswith(magic)), None)
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=src, mode="rb"), kind
    if kind == "xz":
        import lzma

        return lzma.LZMAFile(src), kind
    if kind == "bzip2":
        import bz2

        return bz2.BZ2File(src), kind
    if kind == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
        return reader, kind
    return src, None  # tarfile tells whether this is a tar


class _Info(tarfile.TarInfo):
    """tarfile ends quietly at a broken or missing header after the first; we do not."""

    @classmethod
    def fromtarfile(cls, tf):
        try:
            return super().fromtarfile(tf)
        except tarfile.EOFHeaderError:
            raise
        except tarfile.EmptyHeaderError:
            if tf.offset:
                raise _Corrupt("it ends without the end-of-archive blocks") from None
            raise
        except tarfile.TruncatedHeaderError:
            if tf.offset:
                raise _Corrupt("it ends in the middle of a header") from None
            raise
        except tarfile.InvalidHeaderError as e:
            if tf.offset:
                raise _Corrupt(f"bad header at byte {tf.offset}: {e}") from None
            raise


def _mtime_ns(m: tarfile.TarInfo) -> int:
    """The member's mtime in ns, exact when a pax header carries a fraction."""
    text = m.pax_headers.get("mtime") if m.pax_headers else None
    if text:
        sign = -1 if text.startswith("-") else 1
        whole, _, frac = text.lstrip("+-").partition(".")
        if whole.isdigit() and (not frac or frac.isdigit()):
            return sign * (int(whole) * 1_000_000_000 + int((frac + "000000000")[:9]))
    return int(m.mtime * 1_000_000_000) if isinstance(m.mtime, float) else m.mtime * 1_000_000_000


# --- writing ------------------------------------------------------------------------------


class _Extractor:
    def __init__(self, rootfs, label, rootless, whiteouts, max_bytes, max_entries, progress):
        self.label = label
        self.rootless = rootless
        self.whiteouts = whiteouts
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.progress = progress
        self.keep_overlay = False
        self.trash: Trash | None = None
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        self.cache: OrderedDict[str, int] = OrderedDict()  # archive path -> O_PATH dir fd
        self.dirs: dict[str, tuple] = {}  # folder attributes applied at the end
        self.created: set[tuple[int, int]] = set()  # regular files made by this extraction
        self.written: set[str] = set()  # canonical paths this layer wrote, and their parents
        self.canon: dict[int, str] = {}  # dir fd -> canonical in-root path (whiteouts only)
        try:
            self.rootfd = inroot.open_root(rootfs)
        except FileNotFoundError:
            os.mkdir(rootfs, 0o755)
            self.rootfd = inroot.open_root(rootfs)
        self.root_real = os.readlink(inroot.fd_path(self.rootfd)) if whiteouts else ""

    def close(self) -> None:
        self._forget_all()
        if self.rootfd >= 0:
            os.close(self.rootfd)
            self.rootfd = -1

    # the member loop

    def run(self, tf: tarfile.TarFile) -> None:
        st = self.stats
        while True:
            m = tf.next()
            if m is None:
                break
            tf.members.clear()  # stream mode: do not keep millions of TarInfo objects
            st["entries"] += 1
            if st["entries"] > self.max_entries:
                raise RuripyError(
                    f"{self.label} has more than {self.max_entries} entries, larger than the "
                    "limit; it is not a rootfs ruripy will unpack."
                )
            path = self._name(m.name, m)
            try:
                self._member(tf, m, path)
            except OSError as e:
                if disk_full(e):
                    raise  # the caller says where space ran out
                raise RuripyError(
                    f"{self.label}: cannot unpack {m.name!r}: {e.strerror or e}."
                ) from None
            if self.progress and st["entries"] % 1024 == 0:
                self.progress(st["entries"], st["bytes"])
        self._finish_dirs()
        if self.progress:
            self.progress(st["entries"], st["bytes"])

    def _member(self, tf, m, path: str) -> None:
        if self.whiteouts:
            base = path.rpartition("/")[2]
            if base.startswith(WHITEOUT):
                self._whiteout(m, path, base)
                return
        if m.isreg():
            self._file(tf, m, path)
        elif m.isdir():
            self._dir(m, path)
        elif m.issym():
            self._symlink(m, path)
        elif m.islnk():
            self._hardlink(m, path)
        elif m.ischr() or m.isblk() or m.isfifo():
            self._special(m, path)
        else:
            self.stats["skipped_other"] += 1

    def _refuse(self, m, why: str) -> RuripyError:
        return RuripyError(f"{self.label}: member {m.name!r} {why}; refusing the archive.")

    def _name(self, name: str, m) -> str:
        """The normalised in-root path of a member name ("" is the root itself)."""
        if (  # the common case: a plain relative name, nothing to normalise
            len(name) <= MAX_NAME
            and name.isascii()
            and "." not in name[:1]
            and "/" not in name[:1]
            and "/." not in name
            and "//" not in name
            and "\0" not in name
        ):
            return name.rstrip("/")
        if "\0" in name:
            raise self._refuse(m, "has a NUL byte in its name")
        parts: list[str] = []
        for c in name.split("/"):
            if c in ("", "."):
                continue
            if c == "..":
                if not parts:
                    raise self._refuse(m, "leaves the root folder with '..'")
                parts.pop()
            elif len(c.encode("utf-8", "surrogateescape")) > MAX_NAME:
                raise self._refuse(m, f"has a name component longer than {MAX_NAME} bytes")
            else:
                parts.append(c)
        path = "/".join(parts)
        if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH:
            raise self._refuse(m, f"has a path longer than {MAX_PATH} bytes")
        return path

    # folders: cached parent fds

    def _parent(self, path: str, m, create: bool = True) -> tuple[int, str]:
        parent, _, name = path.rpartition("/")
        if not name:
            raise self._refuse(m, "names the root folder itself")
        return self._dirfd(parent, m, create), name

    def _dirfd(self, parent: str, m, create: bool = True) -> int:
        if not parent:
            return self.rootfd
        fd = self.cache.get(parent)
        if fd is not None:
            self.cache.move_to_end(parent)
            return fd
        try:
            fd = inroot.resolve(self.rootfd, parent, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            if not create:
                raise
            try:
                fd = inroot.mkdirs(self.rootfd, parent, 0o755)
            except OSError as e:
                if disk_full(e):
                    raise
                raise self._refuse(m, f"has a parent that cannot be made ({e.strerror})") from None
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP):
                raise self._refuse(m, f"has a parent that is not a folder ({e.strerror})") from None
            raise
        self.cache[parent] = fd
        if len(self.cache) > _CACHE_SIZE:
            _, old = self.cache.popitem(last=False)
            self.canon.pop(old, None)
            os.close(old)
        return fd

    def _forget_all(self, keep: int = -1) -> None:
        """Drop every cached folder fd (but `keep`): something they were resolved through
        changed."""
        for path, fd in list(self.cache.items()):
            if fd != keep:
                os.close(fd)
                del self.cache[path]
                self.canon.pop(fd, None)

    def _remove(self, pfd: int, name: str) -> None:
        """Remove whatever is at `name` (never following it); a folder goes with its tree."""
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        # `pfd` (usually a cached fd) stays open: callers go on using it, and it was not
        # reached through the entry removed below it.
        isdir = stat.S_ISDIR(st.st_mode)
        if isdir or stat.S_ISLNK(st.st_mode):
            self._forget_all(keep=pfd)  # cached folders may be in it, or reached through it
        self._delete(pfd, name, isdir)

    def _delete(self, dfd: int, name: str, isdir: bool) -> None:
        """Unlink `name` in folder `dfd` (a folder with its tree), or hand it to the trash."""
        if self.trash is not None and self.trash.take(dfd, name):
            return
        if isdir:
            shutil.rmtree(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)

    # A fresh symlink (symlinkat without EEXIST) needs no cache flush: nothing existed at its
    # path, and every removal of a folder or symlink above already flushed the cache.

    # attributes

    def _owner(self, fn, *args, **kw) -> None:
        try:
            fn(*args, **kw)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EINVAL):
                raise
            self.stats["owner_errors"] += 1  # unmapped id, or not root: keep ours

    def _xattrs(self, m) -> list[tuple[str, bytes]]:
        if not m.pax_headers:
            return []
        out = []
        for key, value in m.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                name = key[13:]
                data = value.encode("utf-8", "surrogateescape")
            elif key.startswith("LIBARCHIVE.xattr."):
                import base64
                import urllib.parse

                name = urllib.parse.unquote(key[17:])
                try:
                    data = base64.b64decode(value + "=" * (-len(value) % 4))
                except ValueError:
                    self.stats["xattrs_dropped"] += 1
                    continue
            else:
                continue
            if (
                name.startswith("user.")
                or (name == "security.capability" and not self.rootless)
                or (self.keep_overlay and not self.rootless and name.startswith("trusted.overlay."))
            ):
                out.append((name, data))
            else:
                self.stats["xattrs_dropped"] += 1
        return out

    def _set_xattrs(self, target, xattrs) -> None:
        for name, data in xattrs:
            try:
                os.setxattr(target, name, data)
                self.stats["xattrs"] += 1
            except OSError:
                self.stats["xattr_errors"] += 1

    def _wrote(self, pfd: int, name: str, path: str) -> None:
        """Remember (whiteout mode) that this layer wrote `name` in folder `pfd`."""
        if not self.whiteouts:
            return
        key = self._canonical(pfd, path.rpartition("/")[0])
        key = f"{key}/{name}" if key else name
        while key and key not in self.written:
            self.written.add(key)
            key = key.rpartition("/")[0]

    def _canonical(self, dfd: int, fallback: str) -> str:
        """The real in-root path of folder fd `dfd` (its symlinks resolved)."""
        if dfd == self.rootfd:
            return ""
        got = self.canon.get(dfd)
        if got is None:
            real = os.readlink(inroot.fd_path(dfd))
            if real.startswith(self.root_real + "/"):
                got = real[len(self.root_real) + 1 :]
            else:
                got = "" if real == self.root_real else fallback
            self.canon[dfd] = got
        return got

    # member kinds

    def _file(self, tf, m, path: str) -> None:
        size = m.size
        if self.stats["bytes"] + size > self.max_bytes:
            raise RuripyError(
                f"{self.label} holds more than {_human(self.max_bytes)} of file data (at "
                f"{m.name!r}), larger than the limit; it is not a rootfs ruripy will unpack."
            )
        pfd, name = self._parent(path, m)
        try:
            fd = os.open(name, _CREATE, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, name)
            fd = os.open(name, _CREATE, 0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(m) if m.sparse is not None else tf.fileobj
            left = size
            while left:
                chunk = src.read(min(CHUNK, left))
                if not chunk:
                    raise _Corrupt(f"unexpected end of data in {m.name!r}")
                left -= len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            self.stats["bytes"] += size
            self._owner(os.fchown, fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            xattrs = self._xattrs(m)
            if xattrs:
                self._set_xattrs(fd, xattrs)
            ns = _mtime_ns(m)
            os.utime(fd, ns=(ns, ns))
            st = os.fstat(fd)
            self.created.add((st.st_dev, st.st_ino))
        finally:
            os.close(fd)
        self.stats["files"] += 1
        self._wrote(pfd, name, path)

    def _dir(self, m, path: str) -> None:
        attrs = (m.mode & 0o7777, m.uid, m.gid, _mtime_ns(m), self._xattrs(m))
        self.stats["dirs"] += 1
        if not path:
            self.dirs[""] = attrs
            return
        pfd, name = self._parent(path, m)
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):  # a symlink is replaced, never followed
                self._remove(pfd, name)
                os.mkdir(name, 0o700, dir_fd=pfd)
        self.dirs[path] = attrs
        self._wrote(pfd, name, path)

    def _finish_dirs(self) -> None:
        """Folder owners, modes, xattrs and times, deepest first (a 0555 folder is last)."""
        self._forget_all()
        order = sorted(self.dirs, key=lambda p: p.count("/") + 1 if p else 0, reverse=True)
        flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW  # no read permission needed
        for path in order:
            mode, uid, gid, ns, xattrs = self.dirs[path]
            try:
                fd = inroot.resolve(self.rootfd, path, flags)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    continue  # replaced later in the archive by something else
                raise self._folder_error(path, e) from None
            where = inroot.fd_path(fd)  # the folder itself: /proc/self/fd/N never re-resolves
            try:
                self._owner(os.chown, where, uid, gid)
                os.chmod(where, mode)
                if xattrs:
                    self._set_xattrs(where, xattrs)
                os.utime(where, ns=(ns, ns))
            except OSError as e:
                raise self._folder_error(path, e) from None
            finally:
                os.close(fd)

    def _folder_error(self, path: str, e: OSError) -> RuripyError:
        return RuripyError(
            f"{self.label}: cannot set the owner, mode or times of folder "
            f"{path or '/'!r}: {e.strerror}."
        )

    def _symlink(self, m, path: str) -> None:
        target = m.linkname
        if not target or "\0" in target:
            raise self._refuse(m, "is a symlink with an empty or NUL-holding target")
        if len(target.encode("utf-8", "surrogateescape")) > MAX_LINK:
            raise self._refuse(m, f"is a symlink with a target longer than {MAX_LINK} bytes")
        pfd, name = self._parent(path, m)
        try:
            os.symlink(target, name, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, name)
            os.symlink(target, name, dir_fd=pfd)
        self._owner(os.chown, name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        ns = _mtime_ns(m)
        os.utime(name, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
        self.stats["symlinks"] += 1
        self._wrote(pfd, name, path)

    def _hardlink(self, m, path: str) -> None:
        target = self._name(m.linkname, m)
        if not target:
            raise self._refuse(m, "is a hard link to the root folder")
        try:
            tpfd, tname = self._parent(target, m, create=False)
            tfd = os.open(tname, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tpfd)
        except OSError as e:
            raise self._refuse(
                m, f"is a hard link to {m.linkname!r}, which is missing ({e.strerror})"
            ) from None
        try:
            st = os.fstat(tfd)
            if not stat.S_ISREG(st.st_mode):
                raise self._refuse(m, f"is a hard link to {m.linkname!r}, not a regular file")
            if (st.st_dev, st.st_ino) not in self.created:
                raise self._refuse(
                    m, f"is a hard link to {m.linkname!r}, a file this archive did not create"
                )
            pfd, name = self._parent(path, m)
            src = inroot.fd_path(tfd)
            try:
                os.link(src, name, dst_dir_fd=pfd, follow_symlinks=True)
            except FileExistsError:
                old = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                if (old.st_dev, old.st_ino) != (st.st_dev, st.st_ino):
                    self._remove(pfd, name)
                    os.link(src, name, dst_dir_fd=pfd, follow_symlinks=True)
            # the link member's attributes go onto the shared inode (images.md 3.8)
            self._owner(os.chown, src, m.uid, m.gid)
            os.chmod(src, m.mode & 0o7777)
            xattrs = self._xattrs(m)
            if xattrs:
                self._set_xattrs(src, xattrs)
            ns = _mtime_ns(m)
            os.utime(src, ns=(ns, ns))
        finally:
            os.close(tfd)
        self.stats["hardlinks"] += 1
        self._wrote(pfd, name, path)

    def _special(self, m, path: str) -> None:
        if m.isfifo():
            kind, dev = stat.S_IFIFO, 0
        else:
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            dev = os.makedev(m.devmajor, m.devminor)
            whiteout = self.keep_overlay and m.ischr() and (m.devmajor, m.devminor) == (0, 0)
            allowed = (
                not self.rootless
                and m.ischr()
                and (m.devmajor, m.devminor) in ALLOWED_DEVICES
                and path.startswith("dev/")
            )
            if not (allowed or whiteout):
                self.stats["skipped_devices"] += 1
                return
        pfd, name = self._parent(path, m)
        try:
            try:
                os.mknod(name, kind | 0o600, dev, dir_fd=pfd)
            except FileExistsError:
                self._remove(pfd, name)
                os.mknod(name, kind | 0o600, dev, dir_fd=pfd)
        except PermissionError:
            if kind == stat.S_IFIFO:
                raise
            self.stats["skipped_devices"] += 1  # euid 0 in a user namespace is not enough
            return
        self._owner(os.chown, name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            os.chmod(inroot.fd_path(fd), m.mode & 0o7777)
            xattrs = self._xattrs(m)
            if xattrs:
                self._set_xattrs(inroot.fd_path(fd), xattrs)
        finally:
            os.close(fd)
        ns = _mtime_ns(m)
        os.utime(name, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
        self.stats["fifos" if kind == stat.S_IFIFO else "devices"] += 1
        self._wrote(pfd, name, path)

    # OCI whiteouts

    def _whiteout(self, m, path: str, base: str) -> None:
        parent = path.rpartition("/")[0]
        if base == OPAQUE:
            self._opaque(m, parent)
            return
        if base.startswith(WHITEOUT + WHITEOUT):
            self.stats["skipped_other"] += 1  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs)
            return
        target = base[len(WHITEOUT) :]
        if target in ("", ".", ".."):
            raise self._refuse(m, "is a whiteout that names no file")
        self.stats["whiteouts"] += 1
        try:
            pfd = self._dirfd(parent, m, create=False)
        except (FileNotFoundError, RuripyError):
            return  # nothing below to hide
        key = self._canonical(pfd, parent)
        if (f"{key}/{target}" if key else target) in self.written:
            return  # whiteouts never hide entries of their own layer
        try:
            self._remove(pfd, target)
        except FileNotFoundError:
            pass

    def _opaque(self, m, parent: str) -> None:
        """Hide every entry of `parent` from lower layers, keeping what this layer wrote."""
        self.stats["opaque"] += 1
        try:
            pfd = self._dirfd(parent, m)
        except RuripyError:
            raise self._refuse(m, "is an opaque marker in something not a folder") from None
        key = self._canonical(pfd, parent)
        if key:
            self._wrote_key(key)
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        try:
            self._clear(dfd, key)
        finally:
            os.close(dfd)
        self._forget_all()

    def _wrote_key(self, key: str) -> None:
        while key and key not in self.written:
            self.written.add(key)
            key = key.rpartition("/")[0]

    def _clear(self, dfd: int, key: str) -> None:
        with os.scandir(dfd) as it:
            entries = list(it)
        for e in entries:
            sub = f"{key}/{e.name}" if key else e.name
            if sub not in self.written:
                self._delete(dfd, e.name, e.is_dir(follow_symlinks=False))
            elif e.is_dir(follow_symlinks=False):
                fd = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    self._clear(fd, sub)
                finally:
                    os.close(fd)


class Trash:
    """Deletes what extraction replaces or whites out, beside the extraction.

    `take(dfd, name)` renames the entry (a rename never follows a symlink) into a private
    folder on the same file system, so its path is free at once, and threads delete it
    there. Deleting is the slow part (a file system mounted with `discard` trims every
    freed block before unlink returns); several at a time, and while the extraction goes
    on, it costs a fraction. The folder is outside the rootfs, nothing in it is ever
    followed (entries are opened O_NOFOLLOW relative to folder fds), and `close()` waits
    until it is gone: a finished extraction leaves nothing of it behind.
    """

    WORKERS = 8

    def __init__(self, path: str) -> None:
        os.mkdir(path, 0o700)
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self.dev = os.fstat(self.fd).st_dev
        self.queue: queue.Queue = queue.Queue()
        self.names = itertools.count()
        self.threads: list[threading.Thread] = []
        self.failed: OSError | None = None

    def take(self, dfd: int, name: str) -> bool:
        """Move `name` out of folder `dfd` to be deleted; False if it cannot be moved here
        (another file system, no permission): the caller deletes it itself."""
        if self.fd < 0:
            return False
        new = str(next(self.names))
        try:
            os.rename(name, new, src_dir_fd=dfd, dst_dir_fd=self.fd)
        except OSError as e:
            if e.errno == errno.ENOENT or disk_full(e):
                raise
            return False
        if len(self.threads) < self.WORKERS:
            t = threading.Thread(target=self._work, name="ruripy-trash", daemon=True)
            t.start()
            self.threads.append(t)
        self.queue.put(new)
        return True

    def _work(self) -> None:
        while True:
            name = self.queue.get()
            try:
                if name is None:
                    return
                self._delete(name)
            except OSError as e:
                self.failed = self.failed or e
            finally:
                self.queue.task_done()

    def _delete(self, name: str) -> None:
        """Unlink one entry of the trash; a folder's entries are first moved up into the
        trash itself (to be deleted by any thread), then the empty folder is removed."""
        st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=self.fd)
            return
        if st.st_dev != self.dev:
            raise OSError(errno.EXDEV, "a mount point in the trash", name)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=self.fd)  # fmt: skip
        try:
            with os.scandir(fd) as it:
                children = [e.name for e in it]
            for child in children:
                new = str(next(self.names))
                os.rename(child, new, src_dir_fd=fd, dst_dir_fd=self.fd)
                self.queue.put(new)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=self.fd)

    def close(self) -> None:
        """Wait until everything taken is deleted, then remove the trash folder."""
        if self.fd < 0:
            return
        if self.threads:
            self.queue.join()
            for _ in self.threads:
                self.queue.put(None)
            for t in self.threads:
                t.join()
            self.threads = []
        os.close(self.fd)
        self.fd = -1
        try:
            if self.failed is None:
                os.rmdir(self.path)
            else:
                shutil.rmtree(self.path)
        except OSError as e:
            if disk_full(e):
                raise
            raise RuripyError(
                f"cannot delete {self.path} (what the unpacked layers removed): {e.strerror}."
            ) from None

    def __enter__(self) -> "Trash":
        return self

    def __exit__(self, kind, e, tb) -> None:
        try:
            self.close()
        except (OSError, RuripyError):
            if kind is None:
                raise  # else the error on its way out says more


def _human(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.4g} {unit}"
    return f"{size / 1024:.4g} TiB"
