"""Where ruripy keeps its files: storage layout, names, locks, atomic writes.

Layout under the storage root (`$RURIPY_HOME`, else `$XDG_DATA_HOME/ruripy`, else
`~/.local/share/ruripy`; `/var/lib/ruripy` for root)::

    images/<id>/image.json      what the image is (name, source, digest, arch, config)
    images/<id>/rootfs/         the pristine tree, never run directly
    containers/<name>/container.rec, profile.toml (+ profile.cache), rootfs/ (+ upper/ work/)
    state/<name>.rec            a running container: init pid, start time, namespaces
    locks/<name>.lock           flock files, one per container name (and "images.lock")
    cache/blobs/sha256/<hex>    downloaded archives and layers, by digest
    tmp/                        staging folders, renamed into place when complete

Everything is owned by the caller, directories 0700 and files 0600, opened without
following symlinks. Records read on the run/exec path (container.rec, state) are marshal
dumps of plain dicts, which cost nothing to import; `ruripy ... --json` shows them as JSON.
Standard library only: the run/exec fast path imports it.
"""

import errno
import marshal
import os
import stat

from .errors import RuripyError

MAX_JSON = 1 << 20
_NAME_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")


def valid_name(name: object) -> bool:
    """True when `name` matches ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ (no regex: fast path)."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 64
        and name[0] in _NAME_FIRST
        and all(c in _NAME_REST for c in name)
    )


def storage_root() -> str:
    home = os.environ.get("RURIPY_HOME")
    if home:
        return os.path.abspath(home)
    if os.geteuid() == 0:
        return "/var/lib/ruripy"
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "ruripy")
    return os.path.join(os.path.expanduser("~"), ".local", "share", "ruripy")


def check_name(name: str, what: str = "container") -> str:
    """Refuse a container name that could reach outside its folder, before any file access."""
    if not valid_name(name):
        shown = name if name else "(empty)"
        if len(shown) > 70:
            shown = shown[:64] + "..."
        raise RuripyError(
            f"invalid {what} name {shown!r}: use 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit."
        )
    return name


def check_owned(st: os.stat_result, path: str) -> None:
    """Refuse a file or folder that another user owns or may write."""
    if st.st_uid != os.geteuid():
        raise RuripyError(f"{path} is owned by uid {st.st_uid}, not by you; refusing to use it.")
    if st.st_mode & 0o022:
        raise RuripyError(
            f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run 'chmod go-w {path}' if you trust it."
        )


def ensure_dir(path: str, mode: int = 0o700) -> None:
    """Create `path` (and parents) owned by the caller; refuse a symlink or a foreign folder."""
    try:
        st = os.lstat(path)  # the common case: it is there (no failing mkdir to pay for)
    except FileNotFoundError:
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
        except FileNotFoundError:
            ensure_dir(os.path.dirname(path), mode)
            try:
                os.mkdir(path, mode)
            except FileExistsError:
                pass
        st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise RuripyError(f"{path} is not a folder (a symlink or a file); remove it and retry.")
    check_owned(st, path)


def write_atomic(path: str, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Write `data` to a temporary file beside `path`, fsync it (unless not `durable`), and
    rename it into place."""
    tmp = f"{path}.tmp{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, flags, mode)
    try:
        view = memoryview(data)
        while view:  # a nearly full disk may take only part of it
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)  # a full disk leaves no half-written file behind
        raise
    os.close(fd)
    os.replace(tmp, path)


def read_private(path: str, limit: int = MAX_JSON) -> bytes:
    """Read a file of ruripy's own: no symlink, owned by the caller, not writable by others."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RuripyError(f"{path} is not a regular file; refusing to read it.")
        check_owned(st, path)
        if st.st_size > limit:
            raise RuripyError(f"{path} is larger than {limit} bytes; refusing to read it.")
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_json(path: str) -> dict:
    import json

    try:
        data = json.loads(read_private(path))
    except ValueError as e:
        raise RuripyError(f"{path} is not valid JSON ({e}); remove it and retry.") from None
    if not isinstance(data, dict):
        raise RuripyError(f"{path} does not hold a JSON object; remove it and retry.")
    return data


def write_json(path: str, data: dict) -> None:
    import json

    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def read_record(path: str) -> dict:
    """Read one of ruripy's own records (marshal: no import cost on the run path)."""
    try:
        data = marshal.loads(read_private(path))
    except (ValueError, EOFError, TypeError):
        raise RuripyError(f"{path} is damaged; remove it and retry.") from None
    if not isinstance(data, dict):
        raise RuripyError(f"{path} is damaged; remove it and retry.")
    return data


def write_record(path: str, data: dict, durable: bool = True) -> None:
    write_atomic(path, marshal.dumps(data), durable=durable)


class Lock:
    """An exclusive flock on a lock file; the kernel drops it when the holder dies."""

    def __init__(self, path: str, what: str, wait: bool = True) -> None:
        self.path = path
        self.what = what
        self.wait = wait
        self.fd = -1

    def __enter__(self) -> "Lock":
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o600)
        try:
            import fcntl  # here: exec takes no lock

            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            raise RuripyError(
                f"{self.what} is locked by another ruripy command; try again when it is done."
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Store:
    """The storage root and the paths below it."""

    def __init__(self, root: str | None = None) -> None:
        self.root = root or storage_root()

    # -- folders ---------------------------------------------------------------------------
    def ensure(self) -> "Store":
        ensure_dir(self.root)
        for sub in ("images", "containers", "state", "locks", "cache", "tmp"):
            ensure_dir(os.path.join(self.root, sub))
        return self

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def container_dir(self, name: str) -> str:
        return self.path("containers", check_name(name))

    def state_path(self, name: str) -> str:
        return self.path("state", check_name(name) + ".rec")

    def image_id(self, image_name: str) -> str:
        import hashlib

        return hashlib.sha256(image_name.encode()).hexdigest()[:16]

    def image_dir(self, image_name: str) -> str:
        return self.path("images", self.image_id(image_name))

    def blob_path(self, digest: str) -> str:
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64 or not set(hexpart) <= set("0123456789abcdef"):
            raise RuripyError(f"unsupported digest {digest!r}: only sha256 is used.")
        ensure_dir(self.path("cache", "blobs", "sha256"))
        return self.path("cache", "blobs", "sha256", hexpart)

    def staging_dir(self, label: str) -> str:
        """A fresh folder under tmp/, on the same filesystem as images/ and containers/."""
        ensure_dir(self.path("tmp"))
        tag = "".join(c if c in _NAME_REST else "_" for c in label)[:40]
        for _ in range(100):
            p = self.path("tmp", f"{tag}.{os.getpid()}.{os.urandom(4).hex()}")
            try:
                os.mkdir(p, 0o700)
                return p
            except FileExistsError:
                continue
        raise RuripyError(f"could not make a staging folder under {self.path('tmp')}.")

    # -- locks ------------------------------------------------------------------------------
    def lock(self, name: str, wait: bool = True) -> Lock:
        ensure_dir(self.path("locks"))
        return Lock(self.path("locks", check_name(name) + ".lock"), f"container {name}", wait)

    def images_lock(self) -> Lock:
        ensure_dir(self.path("locks"))
        return Lock(self.path("locks", "images.lock"), "the image store")

    # -- containers -------------------------------------------------------------------------
    def container_names(self) -> list[str]:
        try:
            names = os.listdir(self.path("containers"))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if valid_name(n) and self.container_exists(n))

    def container_exists(self, name: str) -> bool:
        try:
            st = os.lstat(os.path.join(self.container_dir(name), "container.rec"))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise
        return stat.S_ISREG(st.st_mode)

    def require_container(self, name: str) -> None:
        if not self.container_exists(name):
            raise RuripyError(f"no such container: {name}. 'ruripy list' shows your containers.")

    def container_info(self, name: str) -> dict:
        self.require_container(name)
        return read_record(os.path.join(self.container_dir(name), "container.rec"))

    def image_names(self) -> list[tuple[str, dict]]:
        """Every complete image as (id, image.json)."""
        out = []
        try:
            ids = sorted(os.listdir(self.path("images")))
        except FileNotFoundError:
            return []
        for i in ids:
            meta = os.path.join(self.path("images", i), "image.json")
            try:
                out.append((i, read_json(meta)))
            except (OSError, RuripyError):
                continue
        return out
