"""Capabilities: the default set, names, and dropping them the way the kernel needs.

Standard library only.
"""

from ..errors import RuripyError
from . import syscalls

NAMES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]
NUMBER = {n: i for i, n in enumerate(NAMES)}

# Docker's default 14; MKNOD is dropped in privileged mode (there is no device cgroup).
DEFAULT = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
]


def normalise(name: str) -> str:
    n = name.strip().upper()
    if n.startswith("CAP_"):
        n = n[4:]
    if n != "ALL" and n not in NUMBER:
        raise RuripyError(
            f"unknown capability {name!r}; use a name such as NET_ADMIN or SYS_PTRACE, or ALL."
        )
    return n


def effective_set(privileged: bool, add=(), drop=()) -> int:
    """The capability mask a container process keeps, from the defaults and --cap-add/--cap-drop."""
    keep = set(DEFAULT)
    if privileged:
        keep.discard("MKNOD")
    drops = [normalise(c) for c in drop]
    adds = [normalise(c) for c in add]
    if "ALL" in drops:
        keep = set()
    else:
        keep -= set(drops)
    if "ALL" in adds:
        keep = set(NAMES)
    else:
        keep |= set(adds)
    top = syscalls.last_cap()
    mask = 0
    for n in keep:
        if NUMBER[n] <= top:
            mask |= 1 << NUMBER[n]
    return mask
