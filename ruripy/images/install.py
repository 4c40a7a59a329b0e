"""The image store: install a pulled image atomically, list, find and remove images.

An image is images/<id>/{image.json,rootfs}. It is built in a staging folder under tmp/
(named with the pid of its owner, so a later run can tell it is stale), extracted inside
the caller's user namespace (files owned by subordinate ids), given its image.json last,
and only then renamed into images/ while holding the images lock. An image that is
replaced or removed is first renamed into tmp/ and deleted there, in the user namespace.
A `kill -9` at any moment therefore leaves only tmp/ folders (removed by the next pull)
and `.part` downloads (resumed by the next pull); `ruripy images` never shows a broken
image.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import select
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator

from ..errors import RuripyError, disk_full
from ..sandbox.userns import UsernsCall, run_in_userns
from ..store import Store, write_json

CHUNK = 1 << 20
F_SETPIPE_SZ = 1031
STAGING_RE = re.compile(r"^.+\.(\d+)\.[0-9a-f]{8}$")
AT_FDCWD = -100
RENAME_EXCHANGE = 2


# -- removal in the user namespace ----------------------------------------------------------


def _unescape_mount(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _mounts_at_or_below(path: str) -> list[str]:
    """Mount points at `path` or inside it, from /proc/self/mountinfo."""
    real = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4:
                    mp = _unescape_mount(fields[4])
                    if mp == real or mp.startswith(real.rstrip("/") + "/"):
                        found.append(mp)
    except OSError:
        pass
    return found


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_here(paths: list[str]) -> int:
    """Delete each path (a file or a tree) without following symlinks or leaving its
    filesystem; returns the number of entries removed. For code already running as root
    of the user namespace; `remove_tree` gets there first."""
    removed = 0
    for path in paths:
        mounts = _mounts_at_or_below(path)
        if mounts:
            raise RuripyError(
                f"refusing to delete {path}: {mounts[0]} is mounted inside it; "
                f"unmount it first ('umount {mounts[0]}')."
            )
        try:
            top = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(top.st_mode):
            os.unlink(path)
            removed += 1
            continue
        dev = top.st_dev
        fd = os.open(path, _DIR_FLAGS)
        if os.fstat(fd).st_dev != dev:
            os.close(fd)
            raise RuripyError(f"refusing to delete {path}: it changed while being deleted.")
        removed += _clear_dir(fd, dev, path)
        os.rmdir(path)
        removed += 1
    return removed


def _scan(dfd: int, dev: int, where: str) -> tuple[list[str], int]:
    """Unlink every non-folder in `dfd`; return the sub-folders to visit and the count."""
    subdirs, n = [], 0
    with os.scandir(dfd) as it:
        for entry in it:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != dev:
                    raise RuripyError(
                        f"refusing to delete below {where}: {entry.name} is on another filesystem."
                    )
                subdirs.append(entry.name)
            else:
                try:
                    os.unlink(entry.name, dir_fd=dfd)
                    n += 1
                except FileNotFoundError:
                    pass
    return subdirs, n


def _clear_dir(top_fd: int, dev: int, where: str) -> int:
    """Empty the folder open at `top_fd` (iteratively: deep trees need no recursion)."""
    subdirs, n = _scan(top_fd, dev, where)
    # Each frame: (fd of an open folder, its sub-folders still to visit, its name in the parent)
    stack: list[tuple[int, list[str], str]] = [(top_fd, subdirs, "")]
    try:
        while stack:
            dfd, pending, dname = stack[-1]
            if pending:
                name = pending.pop()
                try:
                    cfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
                except FileNotFoundError:
                    continue
                except PermissionError:
                    os.chmod(name, 0o700, dir_fd=dfd, follow_symlinks=False)
                    cfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
                if os.fstat(cfd).st_dev != dev:
                    os.close(cfd)
                    raise RuripyError(
                        f"refusing to delete below {where}: {name} is on another filesystem."
                    )
                stack.append((cfd, [], name))
                sub, k = _scan(cfd, dev, where)
                n += k
                stack[-1][1].extend(sub)
                continue
            stack.pop()
            if stack:  # the top folder is closed below and removed by the caller
                os.close(dfd)
                os.rmdir(dname, dir_fd=stack[-1][0])
                n += 1
    finally:
        for dfd, _, _ in stack[1:]:
            os.close(dfd)
        os.close(top_fd)
    return n


def remove_tree(path: str | list[str]) -> int:
    """Delete a tree (or several) whose files may belong to the caller's subordinate ids.

    Runs in the caller's user namespace (a forked child for root); never follows symlinks,
    never enters another filesystem and refuses a tree with a mount point inside it.
    """
    paths = [path] if isinstance(path, str) else list(path)
    paths = [p for p in paths if os.path.lexists(p)]
    if not paths:
        return 0
    return run_in_userns(remove_here, paths)


# -- staging folders ------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Whether `pid` still runs; a zombie (killed, not yet reaped) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _claim(store: Store, path: str, label: str) -> str | None:
    """Rename `path` to a fresh tmp/ name of ours; None if someone else took it first."""
    tmp = store.path("tmp")
    for _ in range(100):
        dest = os.path.join(tmp, f"{label}.{os.getpid()}.{os.urandom(4).hex()}")
        if os.path.lexists(dest):
            continue
        try:
            os.rename(path, dest)
            return dest
        except FileNotFoundError:
            return None
    raise RuripyError(f"could not rename {path} into {tmp}.")


def stale_staging(store: Store) -> list[str]:
    """Folders in tmp/ whose owning process is gone."""
    try:
        names = os.listdir(store.path("tmp"))
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        m = STAGING_RE.match(n)
        if m and not _alive(int(m.group(1))):
            out.append(store.path("tmp", n))
    return out


PART_MAX_AGE = 7 * 86400  # an interrupted download nobody resumed for a week is dropped


def _drop_old_parts(store: Store) -> int:
    """Delete `.part` downloads untouched for PART_MAX_AGE that no process is writing."""
    folder = store.path("cache", "blobs", "sha256")
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".part")]
    except FileNotFoundError:
        return 0
    n = 0
    now = time.time()
    for name in names:
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < PART_MAX_AGE:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(path, follow_symlinks=False).st_ino == st.st_ino:
                os.unlink(path)
                n += 1
        except OSError:
            continue
        finally:
            os.close(fd)
    return n


def cleanup_stale(store: Store) -> int:
    """Remove staging folders left by killed ruripy processes (and week-old `.part`
    downloads); returns how many folders."""
    _drop_old_parts(store)
    claimed = [c for c in (_claim(store, p, "stale") for p in stale_staging(store)) if c]
    if claimed:
        try:
            remove_tree(claimed)
        except RuripyError as e:
            print(f"ruripy: warning: could not clean up {store.path('tmp')}: {e}", file=sys.stderr)
    return len(claimed)


def discard(path: str) -> None:
    """Best-effort removal of a staging folder after a failure (kept quiet on success)."""
    try:
        remove_tree(path)
    except (RuripyError, OSError) as e:
        print(f"ruripy: warning: could not remove {path}: {e}", file=sys.stderr)


# -- extraction -----------------------------------------------------------------------------


def _plain(value):
    """Something marshal can carry out of the helper process."""
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return str(value)


def disk_usage(path: str) -> int:
    """Bytes a tree takes on disk (hard links once); run where every folder is readable."""
    total, seen = 0, set()
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
    return total


def _extract_from_pipe(
    rfd: int, wfd: int, rootfs: str, rootless: bool, whiteouts: bool, what: str, measure: bool
) -> dict:
    """Child side: extract the archive arriving on `rfd`, then read to its end."""
    os.close(wfd)
    from .extract import extract

    with open(rfd, "rb", buffering=CHUNK) as f:
        try:
            stats = extract(f, rootfs, rootless=rootless, whiteouts=whiteouts, label=what)
        except RuripyError:
            raise
        except MemoryError:
            raise
        except Exception as e:  # lzma, zlib, zstandard, tarfile errors from a bad archive
            if disk_full(e):
                raise  # the parent says where space ran out (sandbox/userns.py)
            raise RuripyError(
                f"{what} is not a valid rootfs archive ({type(e).__name__}: {e})."
            ) from None
        while f.read(CHUNK):  # trailing padding: let the parent finish hashing
            pass
    out = _plain(stats if isinstance(stats, dict) else {"result": stats})
    if measure:
        out["rootfs_size"] = disk_usage(rootfs)
    return out


def _run_feed(feed: Callable, rootfs: str, *ready) -> dict:
    result = feed(rootfs, *ready)
    out = _plain(result if isinstance(result, dict) else {"result": result})
    out["rootfs_size"] = disk_usage(rootfs)
    return out


class Ready:
    """The helper's side of a feed that runs while the parent still fetches its input.

    `ready(i)` blocks until the parent has announced item `i` (one decimal line per item on
    a pipe, in any order); RuripyError if the parent stopped first (it failed, and kills
    this helper anyway).
    """

    def __init__(self, rfd: int) -> None:
        self.rfd = rfd
        self.have: set[int] = set()
        self.buf = b""

    def __call__(self, i: int) -> None:
        while i not in self.have:
            b = os.read(self.rfd, 4096)
            if not b:
                raise RuripyError("the pull stopped before every layer was downloaded.")
            *lines, self.buf = (self.buf + b).split(b"\n")
            self.have.update(int(x) for x in lines)


class Announcer:
    """The parent's side: `notify(i)` tells the helper item `i` is ready (False once the
    helper is gone); `gone(timeout)` waits up to `timeout` seconds for the helper to end
    early (it failed: its error comes out of the wait that follows)."""

    def __init__(self, wfd: int) -> None:
        self.wfd = wfd
        self._poll = select.poll()
        self._poll.register(wfd, 0)  # POLLERR comes anyway once the helper closed its end

    def notify(self, i: int) -> bool:
        try:
            _write_all(self.wfd, b"%d\n" % i)
        except BrokenPipeError:
            return False
        return True

    def gone(self, timeout: float = 0.0) -> bool:
        return bool(self._poll.poll(int(timeout * 1000)))


def _run_fed(feed: Callable, rootfs: str, rfd: int, wfd: int) -> dict:
    os.close(wfd)
    return _run_feed(feed, rootfs, Ready(rfd))


def _feed_while_fetching(feed: Callable, fetch: Callable, rootfs: str) -> dict:
    """Run `feed(rootfs, ready)` in the helper while `fetch(announcer)` runs here."""
    r, w = os.pipe2(os.O_CLOEXEC)
    call = UsernsCall(_run_fed, feed, rootfs, r, w, close_in_parent=(r,))
    try:
        call.start()
    except BaseException:
        os.close(w)
        raise
    try:
        fetch(Announcer(w))
    except BaseException:
        _abandon(call, w)
        w = -1
        raise
    finally:
        if w >= 0:
            os.close(w)
    return call.wait()


def _abandon(call: UsernsCall, w: int) -> None:
    """The feeding side failed: stop the extracting child, close its pipe and reap it. Its
    own error (DiskFull too) says no more than the one being raised here."""
    call.kill()
    os.close(w)
    try:
        call.wait()
    except RuripyError:
        pass


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _BadArchive(RuripyError):
    """The compressed data of an archive is corrupt or ends early."""


XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b"


def _decompressed(raw: Iterator[bytes], what: str) -> Iterator[bytes]:
    """The tar bytes of an xz or gzip archive (anything else is passed on unchanged).

    Decompressing here, in the parent, while the child writes files makes a two-process
    pipeline, like `tar -xJf` with its `xz -d` helper. Output comes in pieces of at most
    CHUNK bytes, so a decompression bomb costs time (until the extractor's budget stops
    it), never memory. Several concatenated xz streams or gzip members are read in turn.
    """
    import lzma
    import zlib

    head = b""
    for c in raw:
        head += c
        if len(head) >= len(XZ_MAGIC):
            break
    if head.startswith(XZ_MAGIC):
        xz = True
    elif head.startswith(GZIP_MAGIC):
        xz = False
    else:
        if head:
            yield head
        yield from raw
        return

    def make():
        return lzma.LZMADecompressor(lzma.FORMAT_XZ) if xz else zlib.decompressobj(31)

    d = make()

    def run(data: bytes) -> Iterator[bytes]:
        nonlocal d
        while data:
            if d.eof:  # another stream or member follows, or padding
                if xz:
                    data = data.lstrip(b"\0")
                elif not data.startswith(GZIP_MAGIC):
                    return  # trailing garbage after gzip members: ignored, as gzip does
                if not data:
                    return
                d = make()
            out = d.decompress(data, CHUNK)
            if out:
                yield out
            if xz:
                while not d.eof and not d.needs_input:
                    out = d.decompress(b"", CHUNK)
                    if out:
                        yield out
            else:
                while d.unconsumed_tail and not d.eof:
                    out = d.decompress(d.unconsumed_tail, CHUNK)
                    if out:
                        yield out
            data = d.unused_data if d.eof else b""

    try:
        yield from run(head)
        for c in raw:
            yield from run(c)
    except (lzma.LZMAError, zlib.error, EOFError) as e:
        raise _BadArchive(f"{what} is truncated or corrupt ({type(e).__name__}: {e}).") from None
    if not d.eof:
        raise _BadArchive(f"{what} is truncated or corrupt (the compressed data ends early).")


def _stream_layer(
    rootfs: str, chunks: Iterable[bytes], rootless: bool, whiteouts: bool, what: str, measure: bool
):
    """Feed one archive from the parent into an extracting child through a pipe."""
    from . import extract  # noqa: F401  (import once, before the fork)

    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(w, F_SETPIPE_SZ, CHUNK)
    except OSError:
        pass
    call = UsernsCall(
        _extract_from_pipe, r, w, rootfs, rootless, whiteouts, what, measure, close_in_parent=(r,)
    )
    try:
        call.start()
    except BaseException:
        os.close(w)
        raise
    raw = iter(chunks)
    failure: RuripyError | None = None
    try:
        try:
            for piece in _decompressed(raw, what):
                _write_all(w, piece)
        except (BrokenPipeError, _BadArchive) as e:
            # The child gave up, or the data is bad. Finish a download anyway, so that a
            # corrupt file is reported as such (and a good one cached for the next try).
            failure = e if isinstance(e, _BadArchive) else None
            if getattr(chunks, "sha256", None):
                for _ in raw:
                    pass
        finally:
            close = getattr(raw, "close", None)
            if close:
                close()
        if failure is not None:
            raise failure
    except BaseException:
        _abandon(call, w)
        w = -1
        raise
    finally:
        if w >= 0:
            os.close(w)
    return call.wait()


# -- the store ------------------------------------------------------------------------------


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(e, os.strerror(e), b)


def containers_using(store: Store, image_id: str, name: str | None = None) -> list[str]:
    """Names of the containers made from image `image_id` (or named `name`)."""
    users = []
    for c in store.container_names():
        try:
            rec = store.container_info(c)
        except (RuripyError, OSError):
            continue
        if rec.get("image_id") == image_id or (
            name is not None and rec.get("image_id") is None and rec.get("image") == name
        ):
            users.append(c)
    return users


def image_by_name(store: Store, name: str) -> tuple[str, dict] | None:
    for i, meta in store.image_names():
        if meta.get("name") == name:
            return i, meta
    return None


def _commit(store: Store, staging: str, name: str, info: dict) -> tuple[str, str | None]:
    """Put the finished staging folder in place; return (id, folder to delete or None)."""
    with store.images_lock():
        old = image_by_name(store, name)
        target_id = old[0] if old else store.image_id(name)
        if old and containers_using(store, old[0], name):
            # Containers run on the old tree: keep it under its own name, install beside it.
            kept = dict(old[1])
            short = str(kept.get("sha256") or kept.get("digest") or old[0]).split(":")[-1][:12]
            kept["name"] = f"{name}@{short}"
            kept["replaced_by"] = info.get("sha256") or info.get("digest")
            write_json(store.path("images", old[0], "image.json"), kept)
            target_id = store.image_id(name)
            while os.path.lexists(store.path("images", target_id)):
                target_id = os.urandom(8).hex()
            old = None
        target = store.path("images", target_id)
        if info.get("id") != target_id:
            info["id"] = target_id
            write_json(os.path.join(staging, "image.json"), info)
        if not os.path.lexists(target):
            os.rename(staging, target)
            return target_id, None
        if _exchange(staging, target):
            return target_id, staging  # staging now holds the old image
        aside = _claim(store, target, "old-image")
        os.rename(staging, target)
        return target_id, aside


def install_image(
    store: Store,
    name: str,
    meta: dict,
    feed,
    *,
    fetch: Callable | None = None,
    whiteouts: bool | None = None,
    quiet: bool = False,
    what: str | None = None,
) -> dict:
    """Build image `name` from `feed` and put it into the store atomically; return image.json.

    `feed` is one of:
      - a callable `feed(rootfs) -> stats` run as root of the caller's user namespace (a
        forked child; for root a plain child) that fills the existing empty folder `rootfs`
        itself, e.g. by calling extract.extract() on cached layer files; its result must be
        marshal-able (a dict of plain values, or an int);
      - with `fetch`, a callable `feed(rootfs, ready)` as above that starts while
        `fetch(announcer)` still runs in this process (downloading, say): `fetch` calls
        `announcer.notify(i)` when item `i` is complete and `feed` calls `ready(i)` before
        it uses item `i`. If `fetch` raises, the helper is killed and that error raised;
        if the helper fails first, `announcer.gone()` turns true and `fetch` should return
        (the helper's error is raised then);
      - a list of archives, each an iterable of bytes chunks (a download.Stream, a file
        read in chunks, ...), extracted in order (with OCI whiteouts when `whiteouts`, which
        defaults to meta["kind"] == "oci") by a child reading a pipe the parent writes, so
        extraction overlaps the download. If an archive raises while it is read (a digest
        mismatch at the end of a download.Stream), the child is killed and that error is
        raised.
    `meta` holds what the caller knows (kind, source, url, sha256, arch, size, distro,
    release, ...); `name`, `id` and `created` are added. Nothing is left behind on failure;
    an image of the same name is replaced only once the new one is complete (if containers
    use the old one, it is kept and renamed `NAME@DIGEST`).
    """
    store.ensure()
    cleanup_stale(store)
    rootless = os.geteuid() != 0
    if whiteouts is None:
        whiteouts = meta.get("kind") == "oci"
    what = what or name
    staging = store.staging_dir("image-" + name)
    try:
        rootfs = os.path.join(staging, "rootfs")
        os.mkdir(rootfs, 0o755)
        if callable(feed) and fetch is not None:
            stats = _feed_while_fetching(feed, fetch, rootfs)
        elif callable(feed):
            stats = UsernsCall(_run_feed, feed, rootfs).start().wait()
        else:
            stats = {}
            layers = list(feed)
            for i, layer in enumerate(layers):
                last = i == len(layers) - 1
                got = _stream_layer(rootfs, layer, rootless, whiteouts, what, last)
                for k, v in (got or {}).items():
                    if isinstance(v, int) and isinstance(stats.get(k, 0), int):
                        stats[k] = stats.get(k, 0) + v
                    else:
                        stats[k] = v
        info = dict(meta)
        info.update(
            name=name,
            id=store.image_id(name),
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            stats=stats,
        )
        if isinstance(stats, dict) and isinstance(stats.get("rootfs_size"), int):
            info["rootfs_size"] = stats["rootfs_size"]
        skipped = stats.get("skipped_devices") if isinstance(stats, dict) else None
        write_json(os.path.join(staging, "image.json"), info)
        image_id, old = _commit(store, staging, name, info)
    except BaseException:
        discard(staging)
        raise
    if old:
        discard(old)
    n = len(skipped) if isinstance(skipped, list) else int(skipped or 0)
    if n:
        why = (
            "a rootless extraction cannot create them"
            if rootless
            else "they are not on the list of safe device nodes"
        )
        print(
            f"ruripy: warning: skipped {n} device node{'s' if n != 1 else ''} in {what} "
            f"({why}; ruripy provides /dev at run time).",
            file=sys.stderr,
        )
    return info


# -- listing, finding, removing -------------------------------------------------------------


def list_images(store: Store) -> list[dict]:
    """image.json of every complete image, sorted by name, with its id."""
    out = []
    for i, meta in store.image_names():
        m = dict(meta)
        m["id"] = i
        out.append(m)
    return sorted(out, key=lambda m: str(m.get("name", "")))


def _candidates(ref: str) -> list[str]:
    """Image names `ref` may stand for: itself, the catalog's full name, lxc: and file forms."""
    names = [ref]
    try:
        from .pull import image_name_for

        alt = image_name_for(ref)
        if alt and alt not in names:
            names.append(alt)
    except RuripyError:
        pass
    return names


def find_image(store: Store, ref: str) -> tuple[str, dict]:
    """(id, image.json) of a pulled image: its name, a catalog name (debian -> debian:trixie),
    `lxc:`/`file:` forms, or an id prefix of at least 4 characters."""
    images = store.image_names()
    for cand in _candidates(ref):
        for i, meta in images:
            if meta.get("name") == cand:
                return i, meta
    if re.fullmatch(r"[0-9a-f]{4,16}", ref):
        hits = [(i, m) for i, m in images if i.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
    by_prefix = [(i, m) for i, m in images if str(m.get("name", "")).startswith(ref + ":")]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_prefix) > 1:
        names = ", ".join(sorted(str(m.get("name")) for _, m in by_prefix))
        raise RuripyError(f"image {ref!r} is ambiguous: {names}; give the full name.")
    raise RuripyError(
        f"no such image: {ref}. 'ruripy images' lists your images; 'ruripy pull {ref}' gets it."
    )


def remove_image(store: Store, ref: str, force: bool = False) -> dict:
    """Remove a pulled image; refuse while containers use it unless `force`."""
    store.ensure()
    cleanup_stale(store)
    with store.images_lock():
        image_id, meta = find_image(store, ref)
        name = str(meta.get("name", ref))
        users = containers_using(store, image_id, name)
        if users and not force:
            raise RuripyError(
                f"image {name} is used by container{'s' if len(users) > 1 else ''} "
                f"{', '.join(users)}; remove {'them' if len(users) > 1 else 'it'} first "
                "('ruripy rm NAME') or use --force."
            )
        trash = _claim(store, store.path("images", image_id), "rmi")
    if trash:
        remove_tree(trash)
    meta = dict(meta)
    meta["id"] = image_id
    meta["orphaned_containers"] = users
    return meta
