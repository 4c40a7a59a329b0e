"""Container profiles: the saved runtime options of a container, and ruri config import.

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
MAX_RURI_CONFIG = 64 * 1024 - 1  # ruri: "files must be under 64 KiB"

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


def _decode(data: bytes, path: str) -> str:
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
    text = _decode(_read_own(path, MAX_PROFILE), path)
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


# -- ruri's k2v config -----------------------------------------------------------------------

# Docker's default 14 (sandbox.caps.DEFAULT): a ruri drop list is mapped relative to it,
# so an import never keeps a capability that ruri would have dropped.
_DOCKER_CAPS = frozenset(
    (
        "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
        "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
    )
)  # fmt: skip
_K2V_HINT = 'ruri config lines look like key="value" or key=["a","b"].'
# Keys ruri writes whose values pair up (or come in threes), flattened into one array.
_GROUPED = {"env": 2, "extra_mountpoint": 2, "extra_ro_mountpoint": 2, "char_devs": 3}
# ruri -D keys that ruripy cannot honour when set, with the reason shown to the user.
_NOT_HONOURED = {
    "no_warnings": "ruripy has no switch to silence its warnings",
    "qemu_path": "ruripy finds qemu-user itself (see --arch)",
    "hidepid": "/proc is not mounted with hidepid",
    "cpuset": "pinning to CPUs is not supported; use --cpus",
    "just_chroot": "a bare chroot without /dev, /proc and /sys is not supported",
    "mount_host_runtime": "the host's /dev, /proc and /sys are not bound in; use --bind",
    "rootfs_source": "mounting an image or a device as / is not supported; import the rootfs",
    "use_kvm": "no /dev/kvm passthrough",
    "create_kvm_node": "no /dev/kvm passthrough",
    "char_devs": "extra device nodes are not supported",
    "oom_score_adj": "the OOM score of the container is not adjusted",
    "timens_monotonic_offset": "time namespace offsets are not supported",
    "timens_realtime_offset": "time namespace offsets are not supported",
    "io_device": "I/O limits are not supported",
    "io_rbps": "I/O limits are not supported",
    "io_wbps": "I/O limits are not supported",
    "masked_path": "extra masked paths are not supported",
    "skip_setgroups": "skipping setgroups is not supported",
    "systemd_mode": "running systemd as init is not supported",
    "enabled_flags": "ruri's --set-flag flags have no ruripy equivalent",
}
# Keys that need nothing from ruripy: it always unshares, picks the backend itself, keeps
# its state outside the rootfs and never blocks job-control signals.
_NOTHING_TO_DO = frozenset(
    ("container_dir", "enable_unshare", "rootless", "use_rurienv", "enable_tty_signals")
)


def _k2v_error(path: str, line: int, problem: str) -> RuripyError:
    return RuripyError(f"{path}, line {line}: {problem}; {_K2V_HINT}")


def _k2v_string(text: str, i: int, path: str, n: int) -> tuple:
    """The quoted string starting at text[i] == '"'; returns (value, index after it)."""
    out = []
    i += 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                break
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise _k2v_error(path, n, "a string is not closed with '\"'")


def parse_k2v(text: str, path: str) -> dict:
    """ruri's k2v text -> {key: (value, line)}; value is a str or a list of str."""
    result: dict = {}
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r").strip(" \t")
        if not line or line.startswith("#"):
            continue
        key, sep, rest = line.partition("=")
        key = key.rstrip(" \t")
        if not sep or not key or not all(c.isascii() and (c.isalnum() or c == "_") for c in key):
            raise _k2v_error(path, n, f"{line[:40]!r} is not a key=value line")
        if key in result:
            raise _k2v_error(path, n, f"duplicate key {key!r} (first on line {result[key][1]})")
        rest = rest.strip(" \t")
        if rest.startswith('"'):
            value, i = _k2v_string(rest, 0, path, n)
        elif rest.startswith("["):
            value, i = [], 1
            while True:
                while i < len(rest) and rest[i] in " \t":
                    i += 1
                if i < len(rest) and rest[i] == "]" and not value:
                    i += 1
                    break
                if i >= len(rest) or rest[i] != '"':
                    raise _k2v_error(path, n, f"the array of {key!r} holds a value without quotes")
                item, i = _k2v_string(rest, i, path, n)
                value.append(item)
                while i < len(rest) and rest[i] in " \t":
                    i += 1
                if i < len(rest) and rest[i] == ",":
                    i += 1
                elif i < len(rest) and rest[i] == "]":
                    i += 1
                    break
                else:
                    raise _k2v_error(path, n, f"the array of {key!r} is not closed with ']'")
        else:
            raise _k2v_error(path, n, f"the value of {key!r} is neither quoted nor an array")
        if rest[i:].strip(" \t"):
            raise _k2v_error(path, n, f"unexpected text after the value of {key!r}")
        if key in _GROUPED and isinstance(value, list) and value != [""]:
            size = _GROUPED[key]
            if len(value) % size:
                what = "pairs" if size == 2 else "groups of three"
                count = f"{len(value)} value" + ("s" if len(value) != 1 else "")
                raise _k2v_error(path, n, f"{key!r} must hold {what}, not {count}")
        result[key] = (value, n)
    return result


def _read_config(path: str) -> str:
    """A ruri config the caller trusts: owned by the caller or root, not writable by others,
    in folders only they can change, under 64 KiB."""
    real = os.path.realpath(path)
    check_parents(real)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise RuripyError(f"cannot read {path}: {e.strerror}.") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RuripyError(f"{path} is not a regular file; give a ruri config file.")
        if st.st_uid not in (os.geteuid(), 0):
            raise RuripyError(
                f"{path} is owned by uid {st.st_uid}, not by you or root; refusing to use it."
            )
        if st.st_mode & 0o022:
            raise RuripyError(
                f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
                f"run 'chmod go-w {path}' if you trust it."
            )
        if st.st_size > MAX_RURI_CONFIG:
            raise RuripyError(f"{path} is 64 KiB or larger; ruri configs are smaller than that.")
        data = os.read(fd, MAX_RURI_CONFIG + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_RURI_CONFIG:
        raise RuripyError(f"{path} is 64 KiB or larger; ruri configs are smaller than that.")
    return _decode(data, path)


def read_ruri_config(path: str) -> dict:
    """The raw keys of ruri's k2v config at `path`: {key: str or list of str}."""
    return {k: v for k, (v, _) in parse_k2v(_read_config(path), path).items()}


def _unset(value: object) -> bool:
    if isinstance(value, list):
        return value in ([], [""])
    return value in ("", "-1", "-114")


def _ruri_caps(dropped: list, notes: list) -> tuple:
    names = set()
    for c in dropped:
        try:
            names.add(options.BY_KEY["cap_drop"].check(c, "drop_caplist")[0])
        except RuripyError:
            notes.append(f"drop_caplist: unknown capability {c!r} ignored")
    if not names:
        return [], []
    cap_drop = [c for c in options.CAPABILITIES if c in names and c in _DOCKER_CAPS]
    extra = [c for c in options.CAPABILITIES if c not in names and c not in _DOCKER_CAPS]
    if len(extra) == len(options.CAPABILITIES) - len(_DOCKER_CAPS):
        extra = ["ALL"]
    return extra, cap_drop


def from_ruri_config(path: str) -> tuple:
    """Map ruri's k2v config (`ruri -D` / `-o`, 3.9-beta1 or 3.9.5) to a full profile.

    Returns (profile, notes): notes say, one per key, what ruripy cannot honour and why.
    Keys that are unset ("", [], "-1", "-114") or off are skipped. ruri's "false" for
    no_new_privs and enable_seccomp is ruri's default, not a choice, so ruripy's safer
    defaults stay (`ruripy config NAME --set no_new_privs=false` opts out). drop_caplist is
    mapped relative to Docker's default set: cap_drop for what ruri drops from it, cap_add
    for what ruri keeps beyond it (an empty list, or one with no name ruripy knows, changes
    nothing, as ruri's reader then keeps its own default list). container_dir is not a
    profile key: `read_ruri_config(path)["container_dir"]` gives the rootfs to import.
    """
    raw = parse_k2v(_read_config(path), path)
    prof = options.defaults()
    notes: list = []

    def put(key: str, value: object, ruri_key: str) -> None:
        try:
            prof[key] = options.BY_KEY[key].check(value, ruri_key)
        except RuripyError as e:
            notes.append(str(e))

    for key, (value, _line) in raw.items():
        if _unset(value) or key in _NOTHING_TO_DO:
            continue
        on = value == "true"
        if key == "user":
            put("user", value, key)
        elif key == "drop_caplist":
            prof["cap_add"], prof["cap_drop"] = _ruri_caps(value, notes)
        elif key == "no_new_privs":
            if on:
                prof["no_new_privs"] = True
        elif key in ("enable_seccomp", "enable_seccomp_whitelist"):
            if on:
                prof["seccomp"] = "default"
        elif key == "deny_syscall":
            names = [v.rpartition(":")[2] for v in value]
            put("deny_syscall", names, key)
        elif key == "hostname":
            put("hostname", value, key)
        elif key == "work_dir":
            put("workdir", value, key)
        elif key == "ro_root":
            prof["read_only"] = on
        elif key == "no_network":
            prof["net"] = "none" if on else "host"
        elif key == "unmask_dirs":
            prof["unmask"] = on
        elif key == "cross_arch":
            put("arch", value, key)
        elif key == "memory":
            put("memory", value, key)
        elif key == "cpupercent":
            if value.isdigit() and 0 < int(value) <= 100:
                prof["cpus"] = int(value) / 100
            else:
                notes.append(f"cpupercent: {value!r} is not a percentage from 1 to 100")
        elif key == "max_pids":
            put("pids_limit", value, key)
        elif key == "command":
            put("command", value, key)
        elif key == "env":
            items = []
            for name, val in zip(value[::2], value[1::2], strict=True):
                if options._env_name_ok(name):
                    items.append(f"{name}={val}")
                else:
                    notes.append(f"env: {name!r} is not a valid variable name")
            put("env", items, key)
        elif key in ("extra_mountpoint", "extra_ro_mountpoint"):
            ro = ":ro" if key == "extra_ro_mountpoint" else ""
            for src, dst in zip(value[::2], value[1::2], strict=True):
                if dst == "/":
                    notes.append(f"{key}: mounting {src!r} as the rootfs is not supported")
                elif not src.startswith("/") or ":" in src + dst:
                    notes.append(
                        f"{key}: {src!r} is not a plain host path (tmpfs, overlay and "
                        "flagged mounts are not supported)"
                    )
                else:
                    try:
                        item = options.BY_KEY["bind"].check(f"{src}:{dst}{ro}", key)
                        prof["bind"] = options.merge(prof, {"bind": item})["bind"]
                    except RuripyError as e:
                        notes.append(str(e))
        elif key in _NOT_HONOURED:
            if value not in ("false", "0"):
                notes.append(f"{key}: {_NOT_HONOURED[key]}")
        else:
            notes.append(f"{key}: not a key ruri writes; ignored")
    return prof, notes
