"""Container profiles: the saved runtime options of a container.

A profile is a dict with every key of `options.OPTIONS` (normalised values; None for an
unset scalar). On disk it is `containers/NAME/profile.toml`, which people may edit, plus
`profile.cache`, a marshal dump of the same dict that the run fast path reads instead of
parsing TOML (`load_cached`). A profile file is trusted only when it and every folder
above it are owned by the caller or root and not writable by others (security.md P0-N7);
nothing is ever read from inside a rootfs.

Importing this module is cheap (no tomllib): `load_cached` imports the TOML parser only
when it has to fall back to profile.toml.
"""

import errno
import marshal
import os
import stat

from . import options
from .errors import RuripyError
from .store import read_private, write_atomic

PROFILE = "profile.toml"
CACHE = "profile.cache"
MAX_PROFILE = 256 * 1024

_HEADER = """\
# ruripy container profile: the saved runtime options of this container.
# Keys are the long option names with '_' for '-'; keys left out take their defaults.
# Change it with 'ruripy config NAME --set KEY=VALUE' or '--unset KEY', or edit it here.
"""


# -- trust -----------------------------------------------------------------------------------


def check_parents(path: str) -> None:
    """Refuse `path` when a folder above it could be changed by someone other than the
    caller or root: owned by another user, or group/world-writable without the sticky bit."""
    uid = os.geteuid()
    d = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    while True:
        st = os.stat(d)
        if st.st_uid not in (uid, 0):
            raise RuripyError(
                f"{d} is owned by uid {st.st_uid}, not by you or root; refusing to read "
                f"{path} below it."
            )
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise RuripyError(
                f"{d} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
                f"refusing to read {path} below it. Run 'chmod go-w {d}' if you trust it."
            )
        parent = os.path.dirname(d)
        if parent == d:
            return
        d = parent


def _read_own(path: str, limit: int) -> bytes:
    """read_private with messages for a missing file and a symlink."""
    try:
        return read_private(path, limit)
    except FileNotFoundError:
        raise RuripyError(f"{path} does not exist.") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RuripyError(
                f"{path} is a symbolic link; refusing to read it. Replace it with the file."
            ) from None
        raise RuripyError(f"cannot read {path}: {e.strerror}.") from None


def decode(data: bytes, path: str) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise RuripyError(f"{path}, line {line}: not UTF-8 text; fix that line.") from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise RuripyError(f"{path}, line {line}: a NUL character; remove it.")
    return text


# -- TOML ------------------------------------------------------------------------------------


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list" if all(isinstance(v, str) for v in value) else "a list of other values"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def from_dict(data: dict, where: str = "profile") -> dict:
    """A full, normalised profile from a partial dict of option keys (TOML types)."""
    prof = options.defaults()
    for key, value in data.items():
        opt = options.BY_KEY.get(key)
        if opt is None:
            raise RuripyError(f"{where}: {options.unknown_key_message(key)}")
        if not opt.toml_ok(value):
            raise RuripyError(f"{where}: {key} must be {opt.expected}, not {_toml_type(value)}.")
        # A relative seccomp file would depend on the folder ruripy runs in.
        if key == "seccomp" and value not in ("default", "off", "unconfined") and value[:1] != "/":
            raise RuripyError(
                f"{where}: seccomp: {value!r} is a relative path; give the absolute path "
                "of the seccomp profile file."
            )
        prof[key] = opt.check(value, f"{where}: {key}")
    return prof


def load(path: str) -> dict:
    """Read and check profile.toml at `path`; returns the full normalised profile."""
    check_parents(path)
    text = decode(_read_own(path, MAX_PROFILE), path)
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        reason, sep, where = msg.rpartition(" (at line ")
        if sep:
            line = where.partition(",")[0]
        else:
            reason = msg.removesuffix(" (at end of document)")
            line = str(text.count("\n") + (0 if text.endswith("\n") else 1))
        raise RuripyError(
            f"{path}, line {line}: invalid TOML ({reason}); fix that line, "
            "or delete the file to go back to the defaults."
        ) from None
    return from_dict(data, path)


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    return "[" + ", ".join(_toml_str(v) for v in value) + "]"


def dumps(profile: dict) -> str:
    """profile.toml text: the header and every value that differs from its default."""
    lines = [_HEADER, "\n"]
    for opt in options.OPTIONS:
        value = profile.get(opt.key)
        if value is None or value == opt.default_value():
            continue
        lines.append(f"{opt.key} = {_toml_value(value)}\n")
    return "".join(lines)


def save(path: str, profile: dict) -> None:
    """Check `profile` (full or partial), write profile.toml (0600) and profile.cache."""
    full = options.defaults()
    for key, value in profile.items():
        opt = options.BY_KEY.get(key)
        if opt is None:
            raise RuripyError(options.unknown_key_message(key))
        full[key] = opt.check(value, key)
    write_atomic(path, dumps(full).encode(), 0o600)
    write_atomic(os.path.join(os.path.dirname(path), CACHE), marshal.dumps(full), 0o600)


def load_cached(container_dir: str) -> dict:
    """The container's profile, from profile.cache when it is ours and at least as new as
    profile.toml, else from profile.toml (rewriting the cache). No profile.toml: defaults."""
    toml_path = os.path.join(container_dir, PROFILE)
    cache_path = os.path.join(container_dir, CACHE)
    check_parents(toml_path)
    try:
        st = os.lstat(toml_path)
    except FileNotFoundError:
        return options.defaults()
    # The cache stands for the toml only while the toml itself would be trusted.
    if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022:
        try:
            cst = os.lstat(cache_path)
            if stat.S_ISREG(cst.st_mode) and cst.st_mtime_ns >= st.st_mtime_ns:
                data = marshal.loads(read_private(cache_path, MAX_PROFILE))
                if type(data) is dict and data.keys() == options.BY_KEY.keys():
                    return data
        except (OSError, RuripyError, ValueError, EOFError, TypeError):
            pass
    prof = load(toml_path)
    try:
        write_atomic(cache_path, marshal.dumps(prof), 0o600)
    except OSError:
        pass
    return prof


# -- editing ---------------------------------------------------------------------------------


def set_values(profile: dict, assignments: list) -> dict:
    """Apply `config --set KEY=VALUE` assignments to `profile` (in place; also returned).

    For a list key the first assignment in this call replaces the saved list and later
    ones append (`--set cap_add=A --set cap_add=B` gives [A, B]). Nothing changes unless
    every assignment is valid.
    """
    changes: dict = {}
    for text in assignments:
        key, value = options.parse_assignment(text)
        if isinstance(value, list) and key in changes:
            changes[key] = options.BY_KEY[key].check(changes[key] + value, key)
        else:
            changes[key] = value
    profile.update(changes)
    return profile


def unset(profile: dict, keys: list) -> dict:
    """Restore `keys` to their defaults in `profile` (in place; also returned)."""
    opts = [options.find(k) for k in keys]
    for opt in opts:
        profile[opt.key] = opt.default_value()
    return profile
