"""A ruri user's config file (the k2v format `ruri -D` writes) as a ruripy profile.

`create NAME --ruri-config FILE` and `import` use it: every ruri key is mapped to the
profile, and the keys ruripy cannot honour are listed. The file is trusted as a profile
is (profile.check_parents: the caller's or root's, in folders only they can change).
"""

import os
import stat

from . import options, profile
from .errors import RuripyError

MAX_RURI_CONFIG = 64 * 1024 - 1  # ruri: "files must be under 64 KiB"

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
    profile.check_parents(real)
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
    return profile.decode(data, path)


def read(path: str) -> dict:
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


def to_profile(path: str) -> tuple:
    """Map ruri's k2v config (`ruri -D` / `-o`, 3.9-beta1 or 3.9.5) to a full profile.

    Returns (profile, notes): notes say, one per key, what ruripy cannot honour and why.
    Keys that are unset ("", [], "-1", "-114") or off are skipped. ruri's "false" for
    no_new_privs and enable_seccomp is ruri's default, not a choice, so ruripy's safer
    defaults stay (`ruripy config NAME --set no_new_privs=false` opts out). drop_caplist is
    mapped relative to Docker's default set: cap_drop for what ruri drops from it, cap_add
    for what ruri keeps beyond it (an empty list, or one with no name ruripy knows, changes
    nothing, as ruri's reader then keeps its own default list). container_dir is not a
    profile key: `read(path)["container_dir"]` gives the rootfs to import.
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
