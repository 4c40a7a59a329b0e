"""The runtime options: the one table that the argv fast path, the CLI, profile files,
completions and the man page all read (docs: cli.md, "Runtime options").

Each `Option` says how the option is spelled on the command line (`long`, `short`), what
its profile key is (`key`: the long name without dashes, `_` for `-`), what kind of value
it takes and how that value is checked and normalised (`check`). Values in a profile dict
are always normalised: lists are lists of strings, sizes are ints, unset scalars are None.

Command-line conventions for the parsers built from this table: a "bool" option is a flag
(`--read-only` sets True, `--read-only=false` sets False, and `off`, when set, is a second
long flag that sets False); a "list" option is repeatable; options whose `long` is None
(`command`, `entrypoint`) are profile-only and have no flag.

Standard library only and cheap to import (it is on the `ruripy run` fast path): no
dataclasses, and re/json/tomllib/difflib/shlex only inside the functions that need them.
"""

import os

from .errors import RuripyError

KINDS = ("str", "bool", "list", "int", "float", "bytes", "choice")

# Capability names by number (linux/capability.h, 0 .. CAP_LAST_CAP = 40).
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)  # fmt: skip
_CAP_SET = frozenset(CAPABILITIES)

# Architectures by their Debian names, and the other spellings accepted for each.
ARCHES = ("amd64", "arm64", "armhf", "armel", "i386", "riscv64", "ppc64el", "s390x", "loong64")
_ARCH_ALIASES = {
    "x86_64": "amd64", "x86-64": "amd64", "x64": "amd64",
    "aarch64": "arm64", "armv8": "arm64", "arm64v8": "arm64",
    "arm": "armhf", "armv7": "armhf", "armv7l": "armhf", "armv7hl": "armhf", "arm32v7": "armhf",
    "armv5": "armel", "armv5l": "armel", "armv5tel": "armel", "armv6": "armel",
    "armv6l": "armel", "arm32v5": "armel", "arm32v6": "armel",
    "x86": "i386", "i486": "i386", "i586": "i386", "i686": "i386", "386": "i386",
    "ppc64le": "ppc64el", "loongarch64": "loong64",
}  # fmt: skip

_BOOL_WORDS = {
    "true": True, "yes": True, "1": True, "on": True,
    "false": False, "no": False, "0": False, "off": False,
}  # fmt: skip
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_ENV_CHARS = _ASCII_LETTERS | _DIGITS | {"_"}
_HOST_CHARS = _ASCII_LETTERS | _DIGITS | {"-"}
_USER_CHARS = _ASCII_LETTERS | _DIGITS | {"_", ".", "-"}
_SYSCALL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_INT_MAX = (1 << 63) - 1

_EXPECTED = {
    "str": "a string",
    "bool": "true or false",
    "list": "a list of strings",
    "int": "a whole number",
    "float": "a number",
    "bytes": 'a size (a number of bytes, or a string like "512m")',
}
_KEYS_HINT = "keys are the long runtime option names with '_' for '-', e.g. cap_add or read_only."


class _Bad(Exception):
    """A value failed a check; Option.check turns it into a RuripyError naming the option."""


def _type_name(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _text(value: str) -> str:
    """Show a user's value in a message: quoted, and cut short when long."""
    if len(value) > 80:
        value = value[:72] + "..."
    return repr(value)


class Option:
    """One runtime option. `check(value)` returns the normalised value or raises
    RuripyError with a one-line message naming the option and the fix."""

    __slots__ = (
        "key", "long", "short", "kind", "choices", "default", "metavar", "help", "off",
        "_item", "_post",
    )  # fmt: skip

    def __init__(
        self,
        key: str,
        long: str | None,
        short: str | None,
        kind: str,
        help: str,
        *,
        default: object = None,
        choices: tuple = (),
        metavar: str | None = None,
        item=None,
        post=None,
        off: str | None = None,
    ) -> None:
        self.key = key
        self.long = long
        self.short = short
        self.kind = kind
        self.choices = choices
        self.default = default
        self.metavar = metavar
        self.help = help
        self.off = off
        self._item = item  # checks one scalar or one list item, returns it normalised
        self._post = post  # list kinds: normalises the whole list (e.g. drops duplicates)

    def __repr__(self) -> str:
        return f"Option({self.key!r}, {self.long!r}, kind={self.kind!r})"

    @property
    def expected(self) -> str:
        """The type of value this option takes, in words (for error messages)."""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        return _EXPECTED[self.kind]

    def toml_ok(self, value: object) -> bool:
        """Whether `value` (as read from a TOML file) has the right type for this option."""
        kind = self.kind
        if kind in ("str", "choice"):
            return isinstance(value, str)
        if kind == "bool":
            return isinstance(value, bool)
        if kind == "list":
            return isinstance(value, list) and all(isinstance(v, str) for v in value)
        if isinstance(value, bool):
            return False
        if kind == "int":
            return isinstance(value, int)
        if kind == "float":
            return isinstance(value, (int, float))
        return isinstance(value, (int, str))  # bytes

    def default_value(self) -> object:
        """A fresh copy of the default (lists are new lists)."""
        return list(self.default) if self.kind == "list" else self.default

    def check(self, value: object, where: str | None = None) -> object:
        """Validate and normalise `value`; `where` names the option in messages
        (default: the long flag, or the key for profile-only options)."""
        try:
            return self._check(value)
        except _Bad as e:
            raise RuripyError(f"{where or self.long or self.key}: {e}") from None

    def _check(self, value: object) -> object:
        kind = self.kind
        if value is None:
            if kind == "list":
                return []
            if self.default is None:
                return None
            raise _Bad(f"a value is needed; give {self.expected}.")
        if kind == "list":
            if isinstance(value, str):
                value = [value]
            elif not isinstance(value, (list, tuple)):
                raise _Bad(f"expected {self.expected}, not {_type_name(value)}.")
            out = []
            for v in value:
                if not isinstance(v, str):
                    raise _Bad(f"expected {self.expected}, not a list holding {_type_name(v)}.")
                _plain(v)
                out.append(self._item(v) if self._item else v)
            return self._post(out) if self._post else out
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
                return _BOOL_WORDS[value.strip().lower()]
            raise _Bad(f"{_text(str(value))} is not true or false; use true, false, yes or no.")
        if kind in ("str", "choice"):
            if not isinstance(value, str):
                raise _Bad(f"expected {self.expected}, not {_type_name(value)}.")
            _plain(value)
            if self._item:
                return self._item(value)
            if value not in self.choices:
                raise _Bad(f"unknown value {_text(value)}; use one of {', '.join(self.choices)}.")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _Bad(f"expected {self.expected}, not {_type_name(value)}.")
        return self._item(value)


def _plain(value: str) -> None:
    """Refuse what can never reach argv, the environment or a TOML file."""
    if "\0" in value:
        raise _Bad(f"{_text(value)} contains a NUL character; remove it.")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise _Bad(f"{_text(value)} is not valid UTF-8 text; use a UTF-8 value.") from None


def _dedupe(items: list) -> list:
    return list(dict.fromkeys(items))


# -- per-option checks -----------------------------------------------------------------------


def _backend(v: str) -> str:
    if v in ("auto", "rootless", "privileged", "proot"):
        return v
    raise _Bad(f"unknown backend {_text(v)}; use one of auto, rootless, privileged, proot.")


def _net(v: str) -> str:
    if v in ("host", "none"):
        return v
    raise _Bad(f"unknown network mode {_text(v)}; use host or none.")


def _id_or_name(part: str) -> bool:
    if not part or len(part) > 256:
        return False
    if set(part) <= _DIGITS:
        return int(part) < 4294967295
    body = part[:-1] if part.endswith("$") else part
    return bool(body) and body[0] != "-" and set(body) <= _USER_CHARS


def _user(v: str) -> str:
    parts = v.split(":")
    if len(parts) > 2 or not all(_id_or_name(p) for p in parts):
        raise _Bad(
            f"{_text(v)} is not a valid user; give USER or USER:GROUP as names "
            "from the container's /etc/passwd and /etc/group, or as numeric ids."
        )
    return v


def _workdir(v: str) -> str:
    if not v.startswith("/"):
        raise _Bad(
            f"{_text(v)} is not an absolute path; give a folder inside the container "
            "starting with '/'."
        )
    return v


def _env_name_ok(name: str) -> bool:
    return bool(name) and name[0] not in _DIGITS and set(name) <= _ENV_CHARS


def _env(v: str) -> str:
    name, sep, _ = v.partition("=")
    if not sep or not name:
        raise _Bad(f"{_text(v)} is not KEY=VALUE; write it as {name or 'KEY'}=value.")
    if not _env_name_ok(name):
        raise _Bad(
            f"{_text(name)} is not a valid variable name; use letters, digits and '_', "
            "not starting with a digit."
        )
    return v


def _env_post(items: list) -> list:
    """Keep one entry per variable: the last value given, at the place of the first."""
    by_name: dict = {}
    for item in items:
        by_name[item.partition("=")[0]] = item
    return list(by_name.values())


def _bind(v: str) -> str:
    parts = v.split(":")
    mode = parts[2] if len(parts) == 3 else "rw"
    if len(parts) not in (2, 3) or not all(parts):
        raise _Bad(
            f"{_text(v)} is not SRC:DST[:ro]; give a host path and a container path, "
            "e.g. /srv/data:/data:ro."
        )
    src, dst = parts[0], parts[1]
    if not src.startswith("/") or not dst.startswith("/"):
        which = "source" if not src.startswith("/") else "destination"
        raise _Bad(
            f"the {which} in {_text(v)} is not an absolute path; give both paths "
            "starting with '/', e.g. /srv/data:/data."
        )
    if os.path.normpath(dst) in ("/", "//"):
        raise _Bad(
            f"{_text(v)} would cover the container's root; choose a folder such as /mnt/host."
        )
    if mode not in ("ro", "rw"):
        raise _Bad(f"unknown mode {_text(mode)} in {_text(v)}; use ro or rw (the default).")
    return f"{src}:{dst}:ro" if mode == "ro" else f"{src}:{dst}"


def _hostname(v: str) -> str:
    labels = v.split(".")
    if len(v) > 64 or not all(
        0 < len(lab) <= 63 and set(lab) <= _HOST_CHARS and lab[0] != "-" and lab[-1] != "-"
        for lab in labels
    ):
        raise _Bad(
            f"{_text(v)} is not a valid hostname; use letters, digits and '-' in "
            "dot-separated labels of 1 to 63 characters, 64 characters in all."
        )
    return v


def _cap(v: str) -> str:
    name = v.strip().upper()
    if name.startswith("CAP_"):
        name = name[4:]
    if name == "ALL" or name in _CAP_SET:
        return name
    if name.isdigit() and int(name) < len(CAPABILITIES):
        return CAPABILITIES[int(name)]
    raise _Bad(
        f"unknown capability {_text(v)}; 'man 7 capabilities' lists the names "
        "(e.g. NET_ADMIN or CAP_NET_ADMIN), or use ALL."
    )


def _seccomp(v: str) -> str:
    if v in ("default", "off"):
        return v
    if v == "unconfined":
        return "off"
    if not v or v.endswith("/"):
        raise _Bad(
            f"{_text(v)} is not a profile; use default, off, or the path of a "
            "seccomp profile file (JSON)."
        )
    return os.path.abspath(v)


def _syscall(v: str) -> str:
    name = v.strip().lower()
    if not name or len(name) > 64 or not set(name) <= _SYSCALL_CHARS:
        raise _Bad(
            f"{_text(v)} is not a system call name; use names like mount or ptrace "
            "(letters, digits and '_')."
        )
    return name


def _arch(v: str) -> str:
    name = v.strip().lower()
    if name in ARCHES:
        return name
    if name in _ARCH_ALIASES:
        return _ARCH_ALIASES[name]
    raise _Bad(f"unknown architecture {_text(v)}; use one of {', '.join(ARCHES)}.")


def _bytes(v: object) -> int:
    n = None
    if isinstance(v, int):
        n = v
    elif isinstance(v, str):
        s = v.strip().lower()
        s = s[:-2] if s.endswith("ib") else s[:-1] if s.endswith("b") else s
        unit = s[-1:] if s[-1:] in ("k", "m", "g", "t", "p") else ""
        num = s[: len(s) - len(unit)]
        if num and set(num) <= _DIGITS:
            n = int(num) * _SIZE_UNITS[unit]
        elif unit and num.count(".") == 1 and len(num) > 1 and set(num) <= _DIGITS | {"."}:
            n = int(float(num) * _SIZE_UNITS[unit])
    if n is None or n <= 0 or n > _INT_MAX:
        shown = _text(v) if isinstance(v, str) else str(v)
        raise _Bad(
            f"{shown} is not a size above zero; give a number of bytes with an optional "
            "k, m, g or t suffix, e.g. 512m or 2g."
        )
    return n


def _cpus(v: object) -> float:
    try:
        n = float(v)
    except ValueError:
        n = -1.0
    if not 0 < n <= 1024:  # also refuses nan
        shown = _text(v) if isinstance(v, str) else str(v)
        raise _Bad(f"{shown} is not a number of CPUs; give a number above 0 and at most 1024.")
    return n


def _pids(v: object) -> int:
    n = -1
    if isinstance(v, int):
        n = v
    elif isinstance(v, str) and v.strip() and set(v.strip()) <= _DIGITS:
        n = int(v.strip())
    if not 0 < n <= _INT_MAX:
        shown = _text(v) if isinstance(v, str) else str(v)
        raise _Bad(f"{shown} is not a whole number above 0; e.g. 1024.")
    return n


def _arg(v: str) -> str:
    return v


# -- the table -------------------------------------------------------------------------------

OPTIONS: tuple = (
    Option("backend", "--backend", None, "choice", "how to enter the container",
           default="auto", choices=("auto", "rootless", "privileged", "proot"),
           metavar="BACKEND", item=_backend),
    Option("user", "--user", "-u", "str",
           "user inside: a name from the container's /etc/passwd, or numeric",
           metavar="USER[:GROUP]", item=_user),
    Option("workdir", "--workdir", "-w", "str", "working directory inside",
           metavar="DIR", item=_workdir),
    Option("env", "--env", "-e", "list", "set an environment variable (repeatable)",
           default=(), metavar="KEY=VALUE", item=_env, post=_env_post),
    Option("bind", "--bind", "-b", "list", "bind-mount a host path (repeatable)",
           default=(), metavar="SRC:DST[:ro]", item=_bind, post=_dedupe),
    Option("hostname", "--hostname", None, "str", "hostname inside (its own UTS namespace)",
           metavar="NAME", item=_hostname),
    Option("net", "--net", None, "choice",
           "share the host network, or get only a loopback",
           default="host", choices=("host", "none"), metavar="host|none", item=_net),
    Option("read_only", "--read-only", None, "bool", "make the root filesystem read-only",
           default=False),
    Option("cap_add", "--cap-add", None, "list", "keep a capability (repeatable; ALL allowed)",
           default=(), choices=("ALL", *CAPABILITIES), metavar="CAP", item=_cap, post=_dedupe),
    Option("cap_drop", "--cap-drop", None, "list", "drop a capability (repeatable; ALL allowed)",
           default=(), choices=("ALL", *CAPABILITIES), metavar="CAP", item=_cap, post=_dedupe),
    Option("seccomp", "--seccomp", None, "str",
           "syscall filter: the built-in profile, none, or a profile file",
           default="default", metavar="default|off|FILE", item=_seccomp),
    Option("deny_syscall", "--deny-syscall", None, "list",
           "add a system call to the filter (repeatable)",
           default=(), metavar="NAME", item=_syscall, post=_dedupe),
    Option("unmask", "--unmask", None, "bool", "do not mask /proc and /sys entries (ruri's -A)",
           default=False),
    Option("no_new_privs", "--no-new-privs", None, "bool",
           "set no_new_privs (default; --allow-new-privs lets sudo and su work inside)",
           default=True, off="--allow-new-privs"),
    Option("arch", "--arch", None, "choice",
           "run a foreign-architecture rootfs through qemu-user",
           choices=ARCHES, metavar="ARCH", item=_arch),
    Option("memory", "--memory", None, "bytes", "memory limit, e.g. 512m or 2g",
           metavar="BYTES", item=_bytes),
    Option("cpus", "--cpus", None, "float", "CPU limit in CPUs, e.g. 1.5",
           metavar="N", item=_cpus),
    Option("pids_limit", "--pids-limit", None, "int", "limit on the number of processes",
           metavar="N", item=_pids),
    Option("tty", "--tty", "-t", "bool",
           "allocate a new pseudo-terminal instead of sharing the caller's", default=False),
    Option("command", None, None, "list", "default command when run is given none",
           default=(), metavar="ARG", item=_arg),
    Option("entrypoint", None, None, "list", "program the command is passed to (OCI images)",
           default=(), metavar="ARG", item=_arg),
)  # fmt: skip

BY_KEY: dict = {o.key: o for o in OPTIONS}
# Every command-line spelling (long, short and `off` flags) -> its Option.
BY_FLAG: dict = {}
for _o in OPTIONS:
    for _flag in (_o.long, _o.short, _o.off):
        if _flag:
            BY_FLAG[_flag] = _o
del _o, _flag
CLI_OPTIONS: tuple = tuple(o for o in OPTIONS if o.long)
EXEC_OPTION_KEYS = ("user", "workdir", "env", "tty")
LIMIT_KEYS = ("memory", "cpus", "pids_limit")  # resource limits: sandbox/cgroups.py applies them
# Lists that `merge` appends to (env merges by variable; other lists are replaced).
_APPEND = frozenset(("bind", "cap_add", "cap_drop", "deny_syscall"))


# -- functions -------------------------------------------------------------------------------


def defaults() -> dict:
    """Every option key with its default value (fresh lists)."""
    return {o.key: o.default_value() for o in OPTIONS}


def close_match(key: str) -> str:
    """' (did you mean 'x'?)' for the nearest option key, or ''."""
    import difflib

    guess = key.strip().lstrip("-").replace("-", "_").lower()
    if guess in BY_KEY:
        return f" (did you mean '{guess}'?)"
    found = difflib.get_close_matches(guess, list(BY_KEY), n=1, cutoff=0.6)
    return f" (did you mean '{found[0]}'?)" if found else ""


def find(key: str) -> Option:
    """The Option for a profile key (also accepts the flag spelling, e.g. cap-add)."""
    opt = BY_KEY.get(key) or BY_KEY.get(key.strip().lstrip("-").replace("-", "_"))
    if opt is None:
        raise RuripyError(f"unknown key {_text(key)}{close_match(key)}; {_KEYS_HINT}")
    return opt


def unknown_key_message(key: str) -> str:
    """The message for a key that is not an option (shared with profile files)."""
    return f"unknown key {_text(key)}{close_match(key)}; {_KEYS_HINT}"


def check_value(key: str, value: object) -> object:
    """Validate and normalise one value for profile key `key`."""
    opt = find(key)
    return opt.check(value, opt.key if opt.long is None else None)


def _split_env(raw: str) -> list:
    """Split 'A=1,B=2' at commas that start a new NAME=; 'A=1,2' stays one entry."""
    out: list = []
    for piece in raw.split(","):
        name, sep, _ = piece.partition("=")
        if out and not (sep and _env_name_ok(name.strip())):
            out[-1] += "," + piece
        else:
            out.append(piece.strip() if sep else piece)
    return out


def parse_assignment(text: str) -> tuple:
    """Parse one `config --set KEY=VALUE` into (key, normalised value).

    Lists take comma-separated values (`cap_add=NET_ADMIN,SYS_PTRACE`; for env a comma
    starts a new entry only before NAME=); command and entrypoint are split like a shell
    line (`command=/bin/sh -c 'echo hi'`); an empty value gives an empty list. Bools take
    true/false/yes/no/1/0.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RuripyError(
            f"{_text(text)} is not KEY=VALUE; write it like read_only=true or cap_add=NET_ADMIN."
        )
    opt = find(key.strip())
    value: object = raw
    if opt.kind == "list":
        if opt.key in ("command", "entrypoint"):
            import shlex

            try:
                value = shlex.split(raw)
            except ValueError as e:
                raise RuripyError(
                    f"{opt.key}: cannot split {_text(raw)} ({e}); check the quotes."
                ) from None
        elif not raw.strip():
            value = []
        elif opt.key == "env":
            value = _split_env(raw)
        else:
            value = [p.strip() for p in raw.split(",") if p.strip()]
    return opt.key, opt.check(value, opt.key)


def _merge_env(base: list, extra: list) -> list:
    return _env_post(list(base) + list(extra))


def merge(base: dict, overrides: dict) -> dict:
    """The options for one run: `base` (a profile) with `overrides` (checked values; None
    means "not given"). Scalars replace; env merges by variable (override wins); bind,
    cap_add, cap_drop and deny_syscall append; command and entrypoint replace."""
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in base.items()}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in BY_KEY:
            raise RuripyError(unknown_key_message(key))
        if key == "env":
            out[key] = _merge_env(out.get(key) or [], value)
        elif key in _APPEND:
            out[key] = _dedupe(list(out.get(key) or []) + list(value))
        elif isinstance(value, (list, tuple)):
            out[key] = list(value)
        else:
            out[key] = value
    return out
