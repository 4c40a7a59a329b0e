"""The one downloader: HTTP(S) with retries, resume, SHA-256 checks and a progress display.

`fetch()` downloads a file to a path. `open_stream()` yields a file's bytes while it
downloads them into the cache, so a pull decompresses and extracts during the download
(one pass over the network). Both write to `<dest>.part` (locked with flock, so two
processes never write the same part), resume it with `Range` after an interruption, check
the digest and then rename it into place. A full disk (ENOSPC, EDQUOT) deletes the part
and raises DiskFull (the caller's `out_of_space` says what was being pulled), and
`discard_downloads()` then deletes whatever else this process put into the cache.
`requests` and `rich` are imported lazily.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator

from .. import __version__
from ..errors import DiskFull, RuripyError, disk_full

CHUNK = 1 << 20
BODY_CHUNK = 256 << 10  # network bytes handed on (and written to the part) at a time
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 60.0
ATTEMPTS = 4  # tries in a row that make no progress before giving up
BACKOFF = 0.25  # seconds before the first retry, doubled each time
VALIDATOR_XATTR = "user.ruripy.validator"
USER_AGENT = f"ruripy/{__version__}"

Progress = Callable[[int, "int | None"], None]  # progress(done_bytes, total_bytes_or_None)
_WRITTEN: set[str] = set()  # cache files and parts this process wrote (discard_downloads)


def new_session():
    """A requests session with ruripy's User-Agent (connections are reused)."""
    import requests

    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    return s


def human_size(n: int | None) -> str:
    if n is None:
        return "unknown size"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


# -- progress display -------------------------------------------------------------------------


class CacheCorrupt(RuripyError):
    """The cached copy of a file did not match its digest (it has been removed)."""


class Bar:
    """Progress on stderr: a rich bar on a terminal, one line per step otherwise, none if quiet.

    Never starts a thread (rich's auto-refresh is off), so forking while it shows is safe.
    """

    def __init__(
        self, label: str, total: int | None, quiet: bool = False, detail: str = ""
    ) -> None:
        self.label = label
        self.total = total
        self.quiet = quiet
        self._progress = None
        self._task = None
        self._last = 0.0
        if quiet:
            return
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                auto_refresh=False,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(label, total=total)
        else:
            more = f" {detail}" if detail else ""
            print(f"{label}{more} ({human_size(total)})", file=sys.stderr, flush=True)

    def __call__(self, done: int, total: int | None = None) -> None:
        if self._progress is None:
            return
        if total is not None and total != self.total:
            self.total = total
            self._progress.update(self._task, total=total)
        now = time.monotonic()
        if now - self._last >= 0.1 or (self.total and done >= self.total):
            self._last = now
            self._progress.update(self._task, completed=done)
            self._progress.refresh()

    def relabel(self, label: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=label)
            self._progress.refresh()
        elif not self.quiet:
            print(label, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.refresh()
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- errors -----------------------------------------------------------------------------------


def _transient_status(code: int) -> bool:
    return code == 429 or 500 <= code <= 599


def _status_error(url: str, code: int) -> RuripyError:
    if code == 404 or code == 410:
        return RuripyError(
            f"{url} was not found on the server (HTTP {code}); the mirror may be incomplete "
            "or out of date: try again later or pass another --mirror."
        )
    if code in (401, 403):
        return RuripyError(
            f"the server refused {url} (HTTP {code}); check the address or pass another --mirror."
        )
    return RuripyError(
        f"the server answered HTTP {code} for {url}; try again later or pass another --mirror."
    )


def _network_error(url: str, exc: BaseException) -> RuripyError:
    import requests

    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        why = "TLS error"
    elif isinstance(exc, requests.exceptions.Timeout):
        why = "timed out"
    elif "Connection refused" in text:
        why = "connection refused"
    elif "Name or service not known" in text or "Temporary failure in name resolution" in text:
        why = "unknown host name"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        why = "the connection failed"
    else:
        why = type(exc).__name__
    return RuripyError(
        f"cannot download {url} ({why}); check your network and the address, "
        "or pass another --mirror."
    )


def _is_transient(exc: BaseException) -> bool:
    import requests

    return isinstance(
        exc,
        (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ),
    ) and not isinstance(exc, requests.exceptions.SSLError)


def _check_url(url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise RuripyError(f"cannot download {url!r}: only http:// and https:// URLs are supported.")


def _sleep_before_retry(failures: int, retry_after: str | None = None) -> None:
    delay = BACKOFF * (2 ** (failures - 1))
    if retry_after and retry_after.strip().isdigit():
        delay = max(delay, min(float(retry_after), 30.0))
    time.sleep(delay)


def get_bytes(url: str, *, session=None, limit: int = 64 << 20, allow_missing: bool = False):
    """GET a small document (an index) with retries; None on 404 when `allow_missing`."""
    _check_url(url)
    session = session or new_session()
    failures = 0
    while True:
        try:
            r = session.get(url, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
            with r:
                if r.status_code == 200:
                    chunks, total = [], 0
                    for c in r.iter_content(CHUNK):
                        total += len(c)
                        if total > limit:
                            raise RuripyError(
                                f"{url} is larger than {limit} bytes; refusing to read it."
                            )
                        chunks.append(c)
                    return b"".join(chunks)
                if r.status_code in (404, 410) and allow_missing:
                    return None
                if not _transient_status(r.status_code):
                    raise _status_error(url, r.status_code)
                failures += 1
                if failures >= ATTEMPTS:
                    raise _status_error(url, r.status_code)
                retry_after = r.headers.get("Retry-After")
            _sleep_before_retry(failures, retry_after)
        except RuripyError:
            raise
        except Exception as e:
            if not _is_transient(e):
                raise _network_error(url, e) from None
            failures += 1
            if failures >= ATTEMPTS:
                raise _network_error(url, e) from None
            _sleep_before_retry(failures)


# -- the downloader ---------------------------------------------------------------------------


def _validator(headers) -> str | None:
    """A strong validator for If-Range: a strong ETag, else Last-Modified."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _get_xattr(fd: int) -> str | None:
    try:
        return os.getxattr(fd, VALIDATOR_XATTR).decode("utf-8", "replace")
    except OSError:
        return None


def _set_xattr(fd: int, value: str | None) -> None:
    try:
        if value:
            os.setxattr(fd, VALIDATOR_XATTR, value.encode())
        else:
            os.removexattr(fd, VALIDATOR_XATTR)
    except OSError:
        pass


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """`bytes START-END/TOTAL` -> (START, TOTAL or None)."""
    if not value or not value.startswith("bytes "):
        return None
    spec = value[6:]
    rng, _, total = spec.partition("/")
    start, _, _ = rng.partition("-")
    try:
        return int(start), (None if total.strip() in ("", "*") else int(total))
    except ValueError:
        return None


def _body(r) -> Iterator[bytes]:
    """The raw body of a streamed response in chunks of about BODY_CHUNK bytes.

    Unlike `iter_content`, bytes read before a dropped connection are yielded before the
    error is raised, so a resume starts exactly where the data stopped.
    """
    import requests
    from urllib3.exceptions import HTTPError as Urllib3Error

    raw = r.raw
    buf = bytearray()
    try:
        while True:
            b = raw.read1(CHUNK, decode_content=True)
            if not b:
                break
            buf += b
            if len(buf) >= BODY_CHUNK:
                yield bytes(buf)
                buf.clear()
    except (Urllib3Error, OSError) as e:
        if buf:
            yield bytes(buf)
        raise requests.exceptions.ChunkedEncodingError(e) from e
    if buf:
        yield bytes(buf)


class Stream:
    """The bytes of `url`, in order, as an iterator of chunks; see `open_stream`.

    After the iteration ends (without an exception) the file is at `dest` with the right
    digest. `from_cache` says whether `dest` already existed (nothing was downloaded);
    `downloaded` counts bytes that came over the network.
    """

    def __init__(
        self,
        url: str,
        dest: str,
        *,
        sha256: str | None,
        size: int | None,
        session=None,
        progress: Progress | None = None,
        quiet: bool = False,
        label: str | None = None,
        restartable: bool = False,
    ) -> None:
        _check_url(url)
        if sha256 is not None:
            sha256 = sha256.lower().removeprefix("sha256:")
        self.url = url
        self.dest = dest
        self.part = dest + ".part"
        self.sha256 = sha256
        self.size = size
        self.session = session
        self.progress = progress
        self.quiet = quiet
        self.label = label or f"Downloading {os.path.basename(url.rstrip('/')) or url}"
        self.restartable = restartable  # no consumer has seen any byte: may restart at 0
        self.from_cache = os.path.exists(dest)
        self.downloaded = 0
        self.digest: str | None = None
        self.total: int | None = size

    # The consumer's view: bytes 0..N of the file, whatever happened on the network.
    def __iter__(self) -> Iterator[bytes]:
        if os.path.exists(self.dest):
            self.from_cache = True
            yield from self._from_cache()
            return
        fd = self._lock_part()
        if fd is None:  # another process finished it while we waited
            self.from_cache = True
            yield from self._from_cache()
            return
        bar = None
        if self.progress is None:
            bar = Bar(self.label, self.size, self.quiet)
            self.progress = bar
        try:
            yield from self._download(fd)
        finally:
            self._unlink_if_empty(fd)
            os.close(fd)
            if bar is not None:
                bar.close()

    def _name(self) -> str:
        return os.path.basename(self.url.split("?")[0].rstrip("/")) or self.url

    def _from_cache(self) -> Iterator[bytes]:
        h = hashlib.sha256()
        done = 0
        try:
            f = open(self.dest, "rb")
        except FileNotFoundError:
            raise RuripyError(
                f"the cached copy of {self.url} disappeared; run the command again."
            ) from None
        with f:
            while True:
                b = f.read(CHUNK)
                if not b:
                    break
                h.update(b)
                done += len(b)
                if self.progress:
                    self.progress(done, self.size)
                yield b
        got = h.hexdigest()
        if self.sha256 and got != self.sha256:
            try:
                os.unlink(self.dest)
            except FileNotFoundError:
                pass
            raise CacheCorrupt(
                f"the cached copy of {self._name()} ({self.dest}) was corrupt (sha256 {got}, "
                f"expected {self.sha256}) and was removed; run the command again."
            )
        self.digest = got

    def _lock_part(self) -> int | None:
        """Open and flock `<dest>.part`; None if `dest` appeared meanwhile."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        waited = False
        while True:
            fd = os.open(self.part, flags, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited and not self.quiet:
                    print(
                        f"waiting for another ruripy process downloading {self._name()}",
                        file=sys.stderr,
                        flush=True,
                    )
                waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.exists(self.dest):
                os.close(fd)
                return None
            try:
                same = os.stat(self.part, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                _WRITTEN.add(self.part)
                return fd
            os.close(fd)  # the holder removed or renamed it: open the new one

    def _replay(self, fd: int, h, start: int, end: int) -> Iterator[bytes]:
        """Hash and yield bytes [start, end) of the part file (downloaded by an earlier run)."""
        done = start
        while done < end:
            b = os.pread(fd, min(CHUNK, end - done), done)
            if not b:
                raise RuripyError(f"{self.part} shrank while in use; run the command again.")
            h.update(b)
            done += len(b)
            if self.progress:
                self.progress(done, self.total)
            yield b

    def _part_digest(self, fd: int, end: int) -> str:
        h = hashlib.sha256()
        done = 0
        while done < end:
            b = os.pread(fd, min(CHUNK, end - done), done)
            if not b:
                break
            h.update(b)
            done += len(b)
        return h.hexdigest()

    def _download(self, fd: int) -> Iterator[bytes]:
        session = self.session or new_session()
        h = hashlib.sha256()
        pos = os.fstat(fd).st_size  # bytes in the part file
        validator = _get_xattr(fd) if pos else None
        # Resume a part from an earlier run only when its content can be checked.
        if pos and not (self.sha256 or validator):
            pos = 0
        if self.size is not None and pos > self.size:
            pos = 0
        if pos and self.size is not None and pos == self.size:
            # Complete but never renamed (the process died): check it before using it.
            if self.sha256 and self._part_digest(fd, pos) == self.sha256:
                _set_xattr(fd, None)
                os.rename(self.part, self.dest)
                _WRITTEN.add(self.dest)
                self.from_cache = True
                yield from self._from_cache()
                return
            pos = 0
        if pos == 0:
            os.ftruncate(fd, 0)
            _set_xattr(fd, None)
            validator = None
        consumed = 0  # bytes the consumer has seen; they are hashed and in the part
        failures = 0  # failed tries in a row without progress
        while True:
            if self.size is not None and consumed == pos == self.size and pos:
                self._finish(fd, h)
                return
            headers = {"Accept-Encoding": "identity"}
            if pos:
                headers["Range"] = f"bytes={pos}-"
                if validator:
                    headers["If-Range"] = validator
            try:
                r = session.get(
                    self.url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
                )
            except Exception as e:
                if not _is_transient(e):
                    raise _network_error(self.url, e) from None
                failures += 1
                if failures >= ATTEMPTS:
                    raise _network_error(self.url, e) from None
                _sleep_before_retry(failures)
                continue
            with r:
                code = r.status_code
                if code == 416 and pos:
                    # Nothing after `pos`: the part holds the whole file, or it is wrong.
                    if consumed == pos:
                        self._finish(fd, h)
                        return
                    if self.sha256 and self._part_digest(fd, pos) == self.sha256:
                        yield from self._replay(fd, h, consumed, pos)
                        self._finish(fd, h)
                        return
                    os.ftruncate(fd, 0)  # consumed == 0 here: start again
                    _set_xattr(fd, None)
                    pos, validator = 0, None
                    continue
                if code not in (200, 206):
                    if not _transient_status(code):
                        raise _status_error(self.url, code)
                    failures += 1
                    if failures >= ATTEMPTS:
                        raise _status_error(self.url, code)
                    retry_after = r.headers.get("Retry-After")
                    r.close()
                    _sleep_before_retry(failures, retry_after)
                    continue
                skip = 0  # bytes of a whole-file answer the consumer already has
                if code == 206:
                    cr = _parse_content_range(r.headers.get("Content-Range"))
                    if cr is None or cr[0] != pos:
                        raise RuripyError(
                            f"the server sent the wrong part of {self.url}; "
                            "try again later or pass another --mirror."
                        )
                    if cr[1] is not None:
                        self.total = cr[1]
                    if validator is None:
                        validator = _validator(r.headers)
                        _set_xattr(fd, validator)
                    if consumed < pos:  # replay what an earlier run downloaded
                        yield from self._replay(fd, h, consumed, pos)
                        consumed = pos
                else:
                    # A whole file: the server ignored Range, or the file changed (If-Range).
                    length = r.headers.get("Content-Length")
                    if length and length.isdigit():
                        self.total = int(length)
                    if self.restartable or consumed == 0:
                        h = hashlib.sha256()
                        consumed = pos = 0
                    else:
                        skip = pos = consumed
                    os.ftruncate(fd, pos)
                    validator = _validator(r.headers)
                    _set_xattr(fd, validator)
                if self.progress:
                    self.progress(consumed, self.total)
                try:
                    for chunk in _body(r):
                        if skip:
                            if len(chunk) <= skip:
                                skip -= len(chunk)
                                continue
                            chunk = chunk[skip:]
                            skip = 0
                        _pwrite_all(fd, chunk, pos)
                        pos += len(chunk)
                        self.downloaded += len(chunk)
                        if self.size is not None and pos > self.size:
                            self._drop_part(fd)
                            raise RuripyError(
                                f"{self.url} is larger than the {self.size} bytes the index "
                                "promised; the download was deleted, try again later or pass "
                                "another --mirror."
                            )
                        h.update(chunk)
                        consumed = pos
                        failures = 0
                        if self.progress:
                            self.progress(consumed, self.total)
                        yield chunk
                except RuripyError:
                    raise
                except Exception as e:
                    if disk_full(e):  # a resume cannot help: do not keep the part
                        self._drop_part(fd)
                        raise DiskFull(e.errno) from None
                    if not _is_transient(e):
                        raise _network_error(self.url, e) from None
                    failures += 1
                    if failures >= ATTEMPTS:
                        raise _network_error(self.url, e) from None
                    _sleep_before_retry(failures)
                    continue
            if skip:
                failures += 1  # the whole-file answer was shorter than what we had
            elif self.size is None or pos >= self.size:
                self._finish(fd, h)
                return
            else:
                failures += 1  # closed early without a Content-Length: resume
            if failures >= ATTEMPTS:
                raise RuripyError(
                    f"{self.url} ended after {pos} bytes; try again later or pass another --mirror."
                )

    def _finish(self, fd: int, h) -> None:
        """Check the complete part and rename it into place; RuripyError on a mismatch."""
        got = h.hexdigest()
        self.digest = got
        if self.sha256 and got != self.sha256:
            self._drop_part(fd)
            raise RuripyError(
                f"{self._name()} from {self.url} is corrupt: its sha256 is {got}, expected "
                f"{self.sha256}; the download was deleted, run the command again or pass "
                "another --mirror."
            )
        size = os.fstat(fd).st_size
        if self.size is not None and size != self.size:
            self._drop_part(fd)
            raise RuripyError(
                f"{self.url} has {size} bytes, not the {self.size} the index promised; the "
                "download was deleted, try again later or pass another --mirror."
            )
        _set_xattr(fd, None)
        os.rename(self.part, self.dest)
        _WRITTEN.add(self.dest)

    def _unlink_if_empty(self, fd: int) -> None:
        """An empty part is useless for a resume: do not leave it behind."""
        try:
            if os.fstat(fd).st_size == 0 and os.stat(self.part).st_ino == os.fstat(fd).st_ino:
                os.unlink(self.part)
        except FileNotFoundError:
            pass

    def _drop_part(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        _set_xattr(fd, None)
        try:
            os.unlink(self.part)
        except FileNotFoundError:
            pass


def open_stream(
    url: str,
    dest_path: str,
    *,
    sha256: str | None,
    size: int | None,
    session=None,
    progress: Progress | None = None,
    quiet: bool = False,
    label: str | None = None,
) -> Stream:
    """The bytes of `url` as an iterator of chunks, also saved to `dest_path` (the cache).

    When `dest_path` exists the chunks come from it (hashed again, nothing downloaded).
    A `.part` from an interrupted run is replayed first and the rest fetched with `Range`.
    If the connection drops, the download resumes where it stopped; a server that ignores
    `Range` is read again from the start and the bytes the consumer already has are skipped.
    The last step of the iteration raises RuripyError if the digest is wrong (the part is
    deleted); the consumer must then throw away whatever it made from the bytes.
    """
    return Stream(
        url,
        dest_path,
        sha256=sha256,
        size=size,
        session=session,
        progress=progress,
        quiet=quiet,
        label=label,
    )


def fetch(
    url: str,
    dest_path: str,
    *,
    sha256: str | None,
    size: int | None,
    session=None,
    progress: Progress | None = None,
    quiet: bool = False,
    label: str | None = None,
) -> str:
    """Download `url` to `dest_path` (via `<dest_path>.part`) and return `dest_path`.

    When `dest_path` already exists it is only read to check `sha256` (and downloaded again
    if it does not match). Retries connection
    errors, timeouts, 5xx and 429 with backoff; resumes with Range/If-Range; restarts from
    byte 0 when the server answers 200 to a Range request. A digest mismatch deletes the
    part and raises RuripyError naming the file and both digests. `progress(done, total)`
    replaces the built-in display; `quiet` turns that display off.
    """
    for attempt in (1, 2):
        s = Stream(
            url,
            dest_path,
            sha256=sha256,
            size=size,
            session=session,
            progress=progress,
            quiet=quiet,
            label=label,
            restartable=True,
        )
        try:
            for _ in s:
                pass
        except CacheCorrupt:
            if attempt == 2:
                raise
            continue  # the bad cached copy is gone: download it
        break
    return dest_path


def discard_downloads() -> int:
    """Delete the cache files and `.part` downloads this process wrote (after a full disk:
    a failed command leaves the disk as it found it); a part another process is writing
    is left alone. Returns how many files were deleted."""
    n = 0
    while _WRITTEN:
        path = _WRITTEN.pop()
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                os.unlink(path)
                n += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return n


def remove_part(dest_path: str) -> None:
    """Delete `<dest_path>.part` (e.g. after the caller found the content unusable)."""
    try:
        os.unlink(dest_path + ".part")
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
