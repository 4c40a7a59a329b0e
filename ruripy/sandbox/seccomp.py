"""The syscall filter: ruripy's default policy, --deny-syscall, and OCI/Docker profile files.

Standard library only. libseccomp is reached through ctypes, loaded by its soname.

Two steps, because nothing may be imported or loaded once the container's root is entered:

* `prepare(mode, deny, caps)` runs on the host. It loads libseccomp, parses a profile file if
  one is given, and adds every rule to a libseccomp context. It returns a `Filter` (or None
  for `--seccomp off`).
* `Filter.load()` is the very last step before `execve`: one call into libseccomp, which sets
  `no_new_privs` and installs the BPF program in the kernel.

The default policy allows everything except the rows of `POLICY` (see `describe()`), on the
native architecture and its 32-bit sub-architectures (x86 and x32 on x86_64, arm on aarch64).
Argument rules compare the low 32 bits of the argument (`SCMP_CMP_MASKED_EQ` with mask
0xffffffff) wherever the kernel reads it as an `int`, so `TIOCSTI | 1 << 32` is caught too
(CVE-2019-10063). `caps` (the capability mask the container keeps) leaves out the rules tied
to a capability it holds, as Docker's profile does: `--cap-add SYS_ADMIN` allows mount,
unshare, setns, namespace flags on clone, clone3 and the rest of that group.

Known limits of the default policy:

* On 32-bit x86, `socket()` mostly arrives as `socketcall(SYS_SOCKET, args)` with its
  arguments in memory the filter cannot read. Filtering the family there would mean refusing
  every 32-bit socket, so the AF_ALG/AF_VSOCK rule is left out on that sub-architecture (the
  same hole Docker's profile has, which allows socketcall outright).
* Calls newer than the installed libseccomp (2.5.4 in Debian 12 knows up to about Linux
  6.7) cannot be named; being allowed by default, they pass (e.g. `open_tree_attr`). The
  capability drop still stops the ones that need CAP_SYS_ADMIN.

A profile FILE uses the OCI / Docker seccomp JSON format:

* `defaultAction`, `defaultErrnoRet`; `syscalls[]` with `names` (or the older `name`),
  `action`, `errnoRet` and `args[]` (`index`, `value`, `valueTwo`, `op`); `architectures` or
  Docker's `archMap`; Docker's `includes`/`excludes` (`caps`, `arches`, `minKernel`), judged
  against the container's capabilities, the host architecture and the running kernel; `flags`
  `SECCOMP_FILTER_FLAG_LOG` and `SECCOMP_FILTER_FLAG_SPEC_ALLOW`.
* Actions: SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL (= SCMP_ACT_KILL_THREAD),
  SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_LOG. SCMP_ACT_ERRNO without `errnoRet`
  returns EPERM. Operators: SCMP_CMP_NE, _LT, _LE, _EQ, _GE, _GT, _MASKED_EQ (`value` is the
  mask, `valueTwo` the value the masked argument must equal).
* As in runc, several conditions on the *same* argument index are alternatives: the rule is
  split into one rule per condition. Conditions on different arguments must all hold.
* A syscall or architecture name this libseccomp does not know is skipped (the profile may
  name calls of a newer kernel); an unknown action, operator or flag, a value of the wrong
  type or range, or a file that is not JSON is a RuripyError naming the file and the field.
* A system call the profile does not name gets the profile's `defaultAction`. ruripy does not
  add runc's "unknown syscalls get ENOSYS" twist: a profile whose default is `SCMP_ACT_ERRNO`
  with `defaultErrnoRet` 1 answers EPERM for every unnamed call, new ones such as `clone3`
  included (glibc then does not fall back to `clone`). Write `"defaultErrnoRet": 38` (ENOSYS)
  or name such calls with `"errnoRet": 38` to get ENOSYS.
* If the profile lists no architectures, only the native one is filtered and libseccomp
  kills any process that makes a system call through another ABI (x86 `int 0x80`, x32).

`--deny-syscall NAME` adds an unconditional EPERM rule for NAME on top of whichever policy is
in force (it replaces the policy's or the profile's own rules for that name); with
`--seccomp off` the filter holds only those rules. "unconfined" is accepted for "off".
"""

from __future__ import annotations

import ctypes
import os
from errno import EPERM

from ..errors import RuripyError
from . import caps as _caps
from .seccomp_cache import description, normalise

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

ENOSYS = 38  # the generic Linux value on every architecture ruripy runs on

_SONAME = "libseccomp.so.2"

# libseccomp actions (seccomp.h)
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000


def act_errno(err: int) -> int:
    """SCMP_ACT_ERRNO(err): fail the call with `err`."""
    return 0x00050000 | (err & 0xFFFF)


# enum scmp_compare
CMP_NE, CMP_LT, CMP_LE, CMP_EQ, CMP_GE, CMP_GT, CMP_MASKED_EQ = range(1, 8)
# enum scmp_filter_attr
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
# Every filter is a binary tree of system call numbers (libseccomp 2.5+; older ones ignore
# it) rather than a list: the kernel takes it in about 60% of the time (0.3 instead of
# 0.55 ms here, on every run and exec) and a filtered call meets fewer comparisons.
_BINARY_TREE = ((_ATTR_CTL_OPTIMIZE, 2),)

LOW32 = 0xFFFFFFFF

# Sub-architectures filtered with the same rules as the native one.
SUB_ARCHES = {"x86_64": ("x86", "x32"), "aarch64": ("arm",)}

# ---------------------------------------------------------------------------------------------
# The default policy, as data (kept in table form: `# fmt: off`). Everything not listed is allowed.
#
# A row is (syscall, errno, condition, capabilities, reason):
#   condition     None: always; or (argument index, test, values) where test is
#                 "in"      - the argument's low 32 bits equal one of `values`
#                 "not_in"  - the argument's low 32 bits equal none of `values`
#                 "any_bit" - the argument has any bit of the mask `values` set
#   capabilities  the rule is left out when the container keeps any of these (like Docker's
#                 capability-gated groups, e.g. after --cap-add SYS_ADMIN); () = never lifted
#   reason        one line for `ruripy doctor` and the docs
# ---------------------------------------------------------------------------------------------
# fmt: off
_ADMIN = ("SYS_ADMIN",)
_GROUPS: tuple[tuple[tuple[str, ...], int, tuple | None, tuple[str, ...], str], ...] = (
    (("keyctl", "add_key", "request_key"), EPERM, None, (),
     "kernel keyrings are not namespaced: keys would be shared with the host"),
    (("kexec_load", "kexec_file_load"), EPERM, None, (),
     "would replace the running host kernel"),
    (("bpf",), EPERM, None, ("SYS_ADMIN", "BPF"),
     "large kernel attack surface"),
    (("perf_event_open",), EPERM, None, ("SYS_ADMIN", "PERFMON"),
     "observes the host and other processes; large kernel attack surface"),
    (("userfaultfd",), EPERM, None, (),
     "turns kernel races into reliable exploits"),
    (("io_uring_setup", "io_uring_enter", "io_uring_register"), EPERM, None, (),
     "large kernel attack surface whose operations do not pass through this filter"),
    (("mount", "umount2", "umount"), EPERM, None, _ADMIN,
     "changes the mount tree: could undo the masks and read-only mounts"),
    (("fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr"),
     EPERM, None, _ADMIN,
     "the new mount API: same power as mount"),
    (("pivot_root",), EPERM, None, (),
     "changes the root of the mount namespace"),
    (("unshare", "setns"), EPERM, None, _ADMIN,
     "creates or joins namespaces: escape primitive and kernel-bug surface"),
    (("clone",), EPERM, (0, "any_bit", 0x7E020000), _ADMIN,
     "clone with a CLONE_NEW* flag creates namespaces, like unshare"),
    (("clone3",), ENOSYS, None, _ADMIN,
     "its flags are in memory the filter cannot read; ENOSYS makes libc fall back to clone"),
    (("open_by_handle_at",), EPERM, None, ("DAC_READ_SEARCH",),
     "opens any file of a mounted file system by handle (the 'shocker' escape)"),
    (("init_module", "finit_module", "delete_module"), EPERM, None, ("SYS_MODULE",),
     "loads or removes code in the host kernel"),
    (("reboot",), EPERM, None, ("SYS_BOOT",),
     "reboots the host outside a pid namespace"),
    (("swapon", "swapoff"), EPERM, None, (),
     "host swap is not namespaced"),
    (("acct",), EPERM, None, ("SYS_PACCT",),
     "process accounting is not namespaced"),
    (("lookup_dcookie", "quotactl"), EPERM, None, _ADMIN,
     "host-wide file system administration"),
    (("syslog",), EPERM, None, ("SYS_ADMIN", "SYSLOG"),
     "reads and clears the host kernel log"),
    (("settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime"), EPERM, None,
     ("SYS_TIME",),
     "the system clock is not namespaced"),
    (("nfsservctl", "uselib", "ustat", "sysfs", "vm86", "vm86old"), EPERM, None, (),
     "obsolete; only old exploits use it"),
    (("personality",), EPERM, (0, "not_in", (0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)), (),
     "other execution domains, e.g. turning off address randomisation; "
     "PER_LINUX, PER_LINUX32, UNAME26 and the query stay allowed"),
    (("socket",), EPERM, (0, "in", (38, 40)), (),
     "AF_ALG (38, kernel crypto) and AF_VSOCK (40, host and hypervisor sockets)"),
    (("ioctl",), EPERM, (1, "in", (0x5412, 0x541C)), (),
     "TIOCSTI and TIOCLINUX push keystrokes into a shared terminal (CVE-2017-5226)"),
)
# fmt: on

# The flat table: one row per system call.
POLICY: tuple[tuple[str, int, tuple | None, tuple[str, ...], str], ...] = tuple(
    (name, err, cond, caps, why) for names, err, cond, caps, why in _GROUPS for name in names
)

_ERRNO_NAMES = {EPERM: "EPERM", ENOSYS: "ENOSYS"}


def _condition_text(cond: tuple | None) -> str:
    if cond is None:
        return "always"
    arg, test, values = cond
    if test == "any_bit":
        return f"arg{arg} & {values:#x} != 0"
    listed = ", ".join(f"{v:#x}" if v > 64 else str(v) for v in values)
    if test == "in":
        return f"arg{arg} & 0xffffffff in ({listed})"
    return f"arg{arg} & 0xffffffff not in ({listed})"


def describe() -> list[dict]:
    """The default policy as a list of rows (for `ruripy doctor` and the docs)."""
    return [
        {
            "syscall": name,
            "errno": _ERRNO_NAMES.get(err, str(err)),
            "when": _condition_text(cond),
            "allowed_with": ["CAP_" + c for c in caps],
            "reason": why,
        }
        for name, err, cond, caps, why in POLICY
    ]


def complement_blocks(allowed: tuple[int, ...], width: int = 32) -> list[tuple[int, int]]:
    """(mask, value) pairs: `x & mask == value` for one of them exactly when x is not `allowed`.

    libseccomp ANDs conditions on different arguments but takes one condition per argument,
    and ORs the rules of a syscall; so "not in a set" must become patterns that cover the rest
    of the `width`-bit space. Each libseccomp rule costs time in `prepare`, so few are wanted.
    """
    full = (1 << width) - 1
    points = {v & full for v in allowed}
    if not points:
        return [(0, 0)]
    if all(p & q in points and p | q in points for p in points for q in points):
        return _lattice_patterns(points, width)
    return _prefix_blocks(points, width)


def _lattice_patterns(points: set[int], width: int) -> list[tuple[int, int]]:
    """The complement of a set closed under & and | as "bit i set and bit j clear" patterns.

    Such a set is exactly the values that keep its fixed bits and satisfy every implication
    "bit i set => bit j set" that holds in it, so a value is outside it when it breaks one:
    one pattern per fixed bit and per edge of the implication graph's transitive reduction
    (a cycle inside each group of equivalent bits, Hasse edges between groups). For
    personality's safe values this gives 32 patterns, where prefix blocks need 82.
    """
    ones = full = (1 << width) - 1
    any_set = 0
    for p in points:
        ones &= p
        any_set |= p
    out = [(1 << b, 1 << b) for b in range(width) if not any_set >> b & 1]  # never set
    out += [(1 << b, 0) for b in range(width) if ones >> b & 1]  # always set
    varying = [b for b in range(width) if (any_set & ~ones & full) >> b & 1]
    # up[i]: the bits set in every allowed value that has bit i set
    up = {}
    for i in varying:
        meet = full
        for p in points:
            if p >> i & 1:
                meet &= p
        up[i] = meet
    groups: dict[int, list[int]] = {}
    for i in varying:
        key = min(j for j in varying if up[i] >> j & 1 and up[j] >> i & 1)
        groups.setdefault(key, []).append(i)

    def edge(i: int, j: int) -> tuple[int, int]:  # bit i set, bit j clear
        return ((1 << i) | (1 << j), 1 << i)

    for members in groups.values():
        if len(members) > 1:
            out += [edge(members[k], members[(k + 1) % len(members)]) for k in range(len(members))]
    reps = list(groups)
    for a in reps:
        above = [b for b in reps if b != a and up[a] >> b & 1]
        for b in above:
            if not any(c != b and up[c] >> b & 1 for c in above):
                out.append(edge(a, b))
    return out


def _prefix_blocks(points: set[int], width: int) -> list[tuple[int, int]]:
    """The complement of any set as aligned prefix blocks (the general fallback)."""
    full = (1 << width) - 1
    out: list[tuple[int, int]] = []

    def walk(prefix: int, depth: int, inside: list[int]) -> None:
        if not inside:
            out.append((full ^ ((1 << (width - depth)) - 1), prefix))
            return
        if depth == width:
            return
        bit = 1 << (width - depth - 1)
        walk(prefix, depth + 1, [p for p in inside if not p & bit])
        walk(prefix | bit, depth + 1, [p for p in inside if p & bit])

    walk(0, 0, sorted(points))
    return out


def _condition_rules(cond: tuple | None) -> list[list[tuple[int, int, int, int]]]:
    """A policy condition as alternatives, each a list of (arg, op, datum_a, datum_b)."""
    if cond is None:
        return [[]]
    arg, test, values = cond
    if test == "in":
        return [[(arg, CMP_MASKED_EQ, LOW32, v)] for v in values]
    if test == "not_in":
        return [[(arg, CMP_MASKED_EQ, m, v)] for m, v in complement_blocks(values)]
    if test == "any_bit":
        bits = [1 << i for i in range(64) if values >> i & 1]
        return [[(arg, CMP_MASKED_EQ, b, b)] for b in bits]
    raise ValueError(f"unknown condition {test!r}")


# ---------------------------------------------------------------------------------------------
# libseccomp through ctypes
# ---------------------------------------------------------------------------------------------
class _Lib:
    """The libseccomp functions ruripy uses, with their C signatures."""

    def __init__(self, soname: str) -> None:
        try:
            lib = ctypes.CDLL(soname, use_errno=True)
        except OSError as e:
            raise RuripyError(
                f"the seccomp filter needs libseccomp ({soname} could not be loaded: {e}); "
                "install the libseccomp2 package or run with --seccomp off."
            ) from None

        class ArgCmp(ctypes.Structure):
            _fields_ = [
                ("arg", ctypes.c_uint),
                ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64),
            ]

        self.ArgCmp = ArgCmp
        vp, u32, i, s = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_char_p
        self.init = self._fn(lib, "seccomp_init", vp, [u32])
        self.release = self._fn(lib, "seccomp_release", None, [vp])
        self.load = self._fn(lib, "seccomp_load", i, [vp])
        self.arch_native = self._fn(lib, "seccomp_arch_native", u32, [])
        self.arch_add = self._fn(lib, "seccomp_arch_add", i, [vp, u32])
        self.arch_remove = self._fn(lib, "seccomp_arch_remove", i, [vp, u32])
        self.merge = self._fn(lib, "seccomp_merge", i, [vp, vp])
        self.arch_resolve_name = self._fn(lib, "seccomp_arch_resolve_name", u32, [s])
        self.resolve_name = self._fn(lib, "seccomp_syscall_resolve_name", i, [s])
        self.resolve_name_arch = self._fn(lib, "seccomp_syscall_resolve_name_arch", i, [u32, s])
        self.rule_add_array = self._fn(
            lib, "seccomp_rule_add_array", i, [vp, u32, i, ctypes.c_uint, ctypes.POINTER(ArgCmp)]
        )
        self.attr_set = self._fn(lib, "seccomp_attr_set", i, [vp, ctypes.c_int, u32])
        self.export_bpf = self._fn(lib, "seccomp_export_bpf", i, [vp, i])
        self.api_get = self._fn(lib, "seccomp_api_get", ctypes.c_uint, [])

    @staticmethod
    def _fn(lib: ctypes.CDLL, name: str, restype, argtypes: list):
        try:
            f = getattr(lib, name)
        except AttributeError:
            raise RuripyError(
                f"the installed libseccomp is too old (it lacks {name}); "
                "install libseccomp2 2.4 or newer, or run with --seccomp off."
            ) from None
        f.restype = restype
        f.argtypes = argtypes
        return f

    def syscall_number(self, name: str) -> int:
        """The native number (or libseccomp's negative pseudo number); -1 if unknown."""
        try:
            raw = name.encode("ascii")
        except UnicodeEncodeError:
            return -1
        if not raw or b"\0" in raw:
            return -1
        return self.resolve_name(raw)

    def syscall_number_arch(self, arch: int, name: str) -> int:
        """The number of `name` on architecture `arch` (a pseudo number < -1 if it has none)."""
        if self.syscall_number(name) == -1:
            return -1
        return self.resolve_name_arch(arch, name.encode("ascii"))

    def arch_token(self, name: str) -> int:
        """libseccomp's token for an architecture name such as "x86"; 0 if unknown."""
        try:
            return self.arch_resolve_name(name.encode("ascii"))
        except UnicodeEncodeError:
            return 0


_lib_cache: _Lib | None = None


def _lib() -> _Lib:
    global _lib_cache
    if _lib_cache is None:
        _lib_cache = _Lib(_SONAME)
    return _lib_cache


class Filter:
    """A complete libseccomp context, built on the host, waiting to be loaded."""

    __slots__ = ("_ctx", "_arg", "_load", "_release", "_export", "description")

    def __init__(self, lib: _Lib, ctx: int, description: str) -> None:
        self._ctx = ctx
        self._arg = ctypes.c_void_p(ctx)
        self._load = lib.load
        self._release = lib.release
        self._export = lib.export_bpf
        self.description = description

    def load(self) -> None:
        """Install the filter in this process (sets no_new_privs). The last step before execve.

        Imports nothing and creates no ctypes objects: the call and its argument were made
        in `prepare`.
        """
        rc = self._load(self._arg)
        if rc != 0:
            raise RuripyError(
                "the kernel refused the seccomp filter (" + os.strerror(-rc) + "); "
                "run with --seccomp off if this kernel lacks seccomp support."
            )

    def export(self) -> bytes:
        """The BPF program libseccomp would load."""
        fd = os.memfd_create("ruripy-seccomp", os.MFD_CLOEXEC)
        try:
            rc = self._export(self._arg, fd)
            if rc != 0:
                raise RuripyError(f"libseccomp could not export the filter ({os.strerror(-rc)}).")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        """Free the libseccomp context (the filter can no longer be loaded)."""
        if self._ctx:
            self._release(self._arg)
            self._ctx = 0

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:
            pass


# A rule to add: (syscall name, libseccomp action, alternatives of [(arg, op, a, b), ...]).
_Rule = tuple[str, int, list[list[tuple[int, int, int, int]]]]


def _context(
    lib: _Lib,
    default: int,
    arches: list[int],
    rules: list[_Rule],
    attrs: tuple[tuple[int, int], ...],
    source: str,
    skip: frozenset[str] = frozenset(),
) -> int:
    """A libseccomp context for `arches` holding `rules` (minus the names in `skip`)."""
    native = lib.arch_native()
    ctx = lib.init(default)
    if not ctx:
        raise RuripyError("libseccomp could not create a filter; run with --seccomp off.")
    try:
        for token in arches:
            if token != native:
                # Fails harmlessly for an architecture of the other byte order, which can
                # never reach this kernel anyway.
                lib.arch_add(ctx, token)
        if native not in arches:
            lib.arch_remove(ctx, native)
        for attr, value in attrs:
            lib.attr_set(ctx, attr, value)
        for name, action, alternatives in rules:
            if action == default or name in skip:
                continue  # libseccomp refuses a rule that repeats the default action
            nr = lib.syscall_number(name)
            if nr == -1:
                continue
            for conds in alternatives:
                arr = (lib.ArgCmp * max(len(conds), 1))(*(lib.ArgCmp(*c) for c in conds))
                rc = lib.rule_add_array(ctx, action, nr, len(conds), arr)
                if rc == 0:
                    continue
                if nr < -1:
                    break  # no filtered architecture has this call (e.g. vm86 on aarch64)
                raise RuripyError(
                    f"{source}: libseccomp refused the rule for {name} "
                    f"({os.strerror(-rc)}); fix or remove that rule."
                )
    except BaseException:
        lib.release(ctx)
        raise
    return ctx


def _multiplexed(lib: _Lib, arch: int, rules: list[_Rule]) -> frozenset[str]:
    """Rules with argument conditions on a call `arch` reaches through a multiplexer.

    On 32-bit x86, socket() usually arrives as socketcall(SYS_SOCKET, args): the arguments sit
    in memory the filter cannot read, so libseccomp would turn "socket with family 40" into
    "every socketcall(SYS_SOCKET)" and cut 32-bit programs off the network. The default policy
    leaves such rules out on that architecture instead (as Docker's effectively does).
    """
    return frozenset(
        name
        for name, _action, alternatives in rules
        if alternatives != [[]]
        and lib.syscall_number(name) >= 0
        and lib.syscall_number_arch(arch, name) < -1
    )


def _build(
    lib: _Lib,
    default: int,
    arches: list[int],
    rules: list[_Rule],
    attrs: tuple[tuple[int, int], ...] = (),
    source: str = "the seccomp filter",
    split_multiplexed: bool = False,
) -> int:
    """One libseccomp context holding `rules` for `arches`; returns the context pointer.

    With `split_multiplexed`, an architecture on which some conditional rules would hit a
    multiplexer gets its own context without them, merged into the main one.
    """
    native = lib.arch_native()
    groups: dict[frozenset[str], list[int]] = {frozenset(): [native]}
    for token in arches:
        if token == native:
            continue
        skip = _multiplexed(lib, token, rules) if split_multiplexed else frozenset()
        groups.setdefault(skip, []).append(token)
    ctx = 0
    try:
        for skip, tokens in groups.items():
            part = _context(lib, default, tokens, rules, attrs, source, skip)
            if not ctx:
                ctx = part
                continue
            rc = lib.merge(ctx, part)  # frees `part` when it succeeds
            if rc != 0:
                lib.release(part)
                raise RuripyError(
                    f"{source}: libseccomp could not merge the architectures "
                    f"({os.strerror(-rc)}); run with --seccomp off."
                )
        # Generate the BPF once now, so a filter that cannot be built fails here, on the host.
        fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            rc = lib.export_bpf(ctx, fd)
        finally:
            os.close(fd)
        if rc != 0:
            raise RuripyError(
                f"{source}: libseccomp could not compile it ({os.strerror(-rc)}); "
                "simplify the profile or run with --seccomp off."
            )
    except BaseException:
        if ctx:
            lib.release(ctx)
        raise
    return ctx


def _native_arches(lib: _Lib) -> list[int]:
    arches = [lib.arch_native()]
    for name in SUB_ARCHES.get(os.uname().machine, ()):
        token = lib.arch_token(name)
        if token:
            arches.append(token)
    return arches


def _caps_mask(caps: int | None) -> int:
    if caps is not None:
        return caps
    mask = 0
    for name in _caps.DEFAULT:
        mask |= 1 << _caps.NUMBER[name]
    return mask


def _holds(mask: int, cap_name: str) -> bool:
    n = cap_name.upper()
    if n.startswith("CAP_"):
        n = n[4:]
    number = _caps.NUMBER.get(n)
    return number is not None and bool(mask >> number & 1)


def _policy_rules(caps: int, deny: set[str]) -> list[_Rule]:
    rules: list[_Rule] = []
    for name, err, cond, lifted_by, _why in POLICY:
        if name in deny or any(_holds(caps, c) for c in lifted_by):
            continue
        rules.append((name, act_errno(err), _condition_rules(cond)))
    return rules


def prepare(
    mode: str = "default", deny: Sequence[str] = (), caps: int | None = None
) -> Filter | None:
    """Build the whole filter on the host; None for --seccomp off with no --deny-syscall.

    `mode` is "default", "off" or the path of an OCI/Docker JSON profile; `deny` holds the
    --deny-syscall names; `caps` is the capability mask the container keeps (None: the
    default set), which lifts the rules tied to a capability as Docker does.
    seccomp_cache.prepare keeps compiled programs of the built-in policies.
    """
    mode, deny = normalise(mode, deny)
    if mode == "off" and not deny:
        return None
    return _compile(mode, deny, caps)


def _compile(mode: str, deny: list[str], caps: int | None) -> Filter:
    lib = _lib()
    for name in deny:
        if lib.syscall_number(name) == -1:
            raise RuripyError(
                f"unknown system call {name} in --deny-syscall; "
                "give a name from syscalls(2), such as mkdir."
            )
    mask = _caps_mask(caps)
    lib.api_get()  # let libseccomp probe the kernel now rather than inside load()
    deny_rules: list[_Rule] = [(name, act_errno(EPERM), [[]]) for name in deny]
    attrs: tuple[tuple[int, int], ...] = ()
    builtin = mode in ("default", "off")
    if mode == "default":
        default, arches, source = ACT_ALLOW, _native_arches(lib), "the default seccomp policy"
        rules = _policy_rules(mask, set(deny))
    elif mode == "off":
        default, arches, source = ACT_ALLOW, _native_arches(lib), "--deny-syscall"
        rules = []
    else:
        profile = _load_profile(lib, mode, mask)
        default, arches, attrs = profile.default, profile.arches, profile.attrs
        rules = [r for r in profile.rules if r[0] not in deny]
        source = f"seccomp profile {mode}"
    ctx = _build(lib, default, arches, rules + deny_rules, _BINARY_TREE + attrs, source, builtin)
    return Filter(lib, ctx, description(mode, deny))


# ---------------------------------------------------------------------------------------------
# OCI / Docker profile files
# ---------------------------------------------------------------------------------------------
_PROFILE_ACTIONS = {
    "SCMP_ACT_ALLOW": ACT_ALLOW,
    "SCMP_ACT_KILL": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": ACT_TRAP,
    "SCMP_ACT_LOG": ACT_LOG,
    "SCMP_ACT_ERRNO": None,  # act_errno(errnoRet), EPERM when errnoRet is not given
}
_PROFILE_OPS = {
    "SCMP_CMP_NE": CMP_NE,
    "SCMP_CMP_LT": CMP_LT,
    "SCMP_CMP_LE": CMP_LE,
    "SCMP_CMP_EQ": CMP_EQ,
    "SCMP_CMP_GE": CMP_GE,
    "SCMP_CMP_GT": CMP_GT,
    "SCMP_CMP_MASKED_EQ": CMP_MASKED_EQ,
}
_PROFILE_FLAGS = {
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_TSYNC": None,  # the container's process has a single thread
}
# Docker's names for the host architecture in includes/excludes "arches".
_DOCKER_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "i386": "x86",
    "i686": "x86",
    "armv7l": "arm",
    "armv8l": "arm",
}
_MAX_PROFILE = 16 << 20
_MAX_ERRNO = 4095


class _Profile:
    __slots__ = ("default", "arches", "rules", "attrs")

    def __init__(self, default: int, arches: list[int], rules: list[_Rule], attrs) -> None:
        self.default = default
        self.arches = arches
        self.rules = rules
        self.attrs = attrs


class _Bad(Exception):
    """A problem in a profile: the field and what is wrong with it."""


def _int(value, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _Bad(f"{field}: expected a whole number from {low} to {high}, got {value!r}")
    return value


def _str(value, field: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{field}: expected a string, got {value!r}")
    return value


def _list(value, field: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(f"{field}: expected a list, got {value!r}")
    return value


def _obj(value, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"{field}: expected an object, got {value!r}")
    return value


def _action(doc: dict, field: str, errno_field: str) -> int:
    name = _str(doc.get(field.rsplit(".", 1)[-1]), field)
    if name not in _PROFILE_ACTIONS:
        known = ", ".join(_PROFILE_ACTIONS)
        raise _Bad(f"{field}: unknown or unsupported action {name!r} (use one of {known})")
    errno_key = errno_field.rsplit(".", 1)[-1]
    ret = doc.get(errno_key)
    if name == "SCMP_ACT_ERRNO":
        return act_errno(EPERM if ret is None else _int(ret, errno_field, 0, _MAX_ERRNO))
    if ret is not None:
        raise _Bad(f"{errno_field}: only meaningful with SCMP_ACT_ERRNO, not {name}")
    return _PROFILE_ACTIONS[name]  # type: ignore[return-value]


def _kernel_at_least(want: str, field: str) -> bool:
    parts = want.split(".") if isinstance(want, str) else []
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise _Bad(f'{field}: expected a kernel version such as "5.8", got {want!r}')
    have = []
    for p in os.uname().release.split("-")[0].split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit()) or "0"
        have.append(int(digits))
    return tuple(have) >= (int(parts[0]), int(parts[1]))


def _applies(call: dict, field: str, caps: int) -> bool:
    """Docker's includes/excludes: does this syscall group apply to this container?"""
    arch = _DOCKER_ARCH.get(os.uname().machine, os.uname().machine)
    inc = _obj(call.get("includes"), f"{field}.includes")
    exc = _obj(call.get("excludes"), f"{field}.excludes")
    for key, filt in (("includes", inc), ("excludes", exc)):
        where = f"{field}.{key}"
        arches = [_str(a, f"{where}.arches") for a in _list(filt.get("arches"), f"{where}.arches")]
        names = [_str(c, f"{where}.caps") for c in _list(filt.get("caps"), f"{where}.caps")]
        kernel = filt.get("minKernel")
        if key == "excludes":
            if arch in arches or any(_holds(caps, c) for c in names):
                return False
            if kernel and _kernel_at_least(kernel, f"{where}.minKernel"):
                return False
        else:
            if arches and arch not in arches:
                return False
            if not all(_holds(caps, c) for c in names):
                return False
            if kernel and not _kernel_at_least(kernel, f"{where}.minKernel"):
                return False
    return True


def _conditions(args: list, field: str) -> list[list[tuple[int, int, int, int]]]:
    conds = []
    for j, a in enumerate(args):
        where = f"{field}[{j}]"
        a = _obj(a, where)
        index = _int(a.get("index"), f"{where}.index", 0, 5)
        value = _int(a.get("value", 0), f"{where}.value", 0, (1 << 64) - 1)
        value2 = _int(a.get("valueTwo", 0), f"{where}.valueTwo", 0, (1 << 64) - 1)
        op_name = _str(a.get("op"), f"{where}.op")
        if op_name not in _PROFILE_OPS:
            known = ", ".join(_PROFILE_OPS)
            raise _Bad(f"{where}.op: unknown operator {op_name!r} (use one of {known})")
        conds.append((index, _PROFILE_OPS[op_name], value, value2))
    indexes = [c[0] for c in conds]
    if len(set(indexes)) != len(indexes):
        return [[c] for c in conds]  # runc: conditions on one argument are alternatives
    return [conds]


def _arch_tokens(lib: _Lib, doc: dict) -> list[int]:
    native = lib.arch_native()
    listed: list[str] = []
    if "architectures" in doc and "archMap" in doc:
        raise _Bad("archMap: give either architectures or archMap, not both")
    for i, a in enumerate(_list(doc.get("architectures"), "architectures")):
        listed.append(_str(a, f"architectures[{i}]"))
    for i, entry in enumerate(_list(doc.get("archMap"), "archMap")):
        where = f"archMap[{i}]"
        entry = _obj(entry, where)
        main = _str(entry.get("architecture"), f"{where}.architecture")
        subs = _list(entry.get("subArchitectures"), f"{where}.subArchitectures")
        if _arch_from_scmp(lib, main) == native:
            listed += [_str(s, f"{where}.subArchitectures") for s in subs]
    tokens = [native]
    for name in listed:
        token = _arch_from_scmp(lib, name)
        if token and token not in tokens:
            tokens.append(token)  # names this libseccomp does not know are skipped
    return tokens


def _arch_from_scmp(lib: _Lib, name: str) -> int:
    if not name.startswith("SCMP_ARCH_"):
        raise _Bad(f"architecture {name!r}: expected a name such as SCMP_ARCH_X86_64")
    return lib.arch_token(name[len("SCMP_ARCH_") :].lower())


def _load_profile(lib: _Lib, path: str, caps: int) -> _Profile:
    import json

    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_PROFILE + 1)
    except OSError as e:
        raise RuripyError(
            f"seccomp profile {path}: cannot read it ({e.strerror}); "
            "give a JSON profile file, default or off."
        ) from None
    if len(raw) > _MAX_PROFILE:
        raise RuripyError(f"seccomp profile {path}: larger than 16 MiB; is it the right file?")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise RuripyError(
            f"seccomp profile {path}: not valid JSON ({e}); give an OCI or Docker seccomp profile."
        ) from None
    try:
        return _parse_profile(lib, doc, caps)
    except _Bad as e:
        raise RuripyError(f"seccomp profile {path}: {e}.") from None


def _parse_profile(lib: _Lib, doc, caps: int) -> _Profile:
    if not isinstance(doc, dict):
        raise _Bad("expected a JSON object with defaultAction and syscalls")
    if "defaultAction" not in doc:
        raise _Bad("defaultAction: missing (for example SCMP_ACT_ERRNO)")
    default = _action(doc, "defaultAction", "defaultErrnoRet")
    arches = _arch_tokens(lib, doc)
    attrs = []
    for i, flag in enumerate(_list(doc.get("flags"), "flags")):
        flag = _str(flag, f"flags[{i}]")
        if flag not in _PROFILE_FLAGS:
            raise _Bad(f"flags[{i}]: unsupported flag {flag!r}")
        if _PROFILE_FLAGS[flag] is not None:
            attrs.append((_PROFILE_FLAGS[flag], 1))
    rules: list[_Rule] = []
    for i, call in enumerate(_list(doc.get("syscalls"), "syscalls")):
        field = f"syscalls[{i}]"
        call = _obj(call, field)
        if "name" in call and "names" in call:
            raise _Bad(f"{field}: give either name or names, not both")
        if "name" in call:
            names = [_str(call["name"], f"{field}.name")]
        else:
            names = [
                _str(n, f"{field}.names[{k}]")
                for k, n in enumerate(_list(call.get("names"), f"{field}.names"))
            ]
            if not names:
                raise _Bad(f"{field}.names: missing or empty")
        if "action" not in call:
            raise _Bad(f"{field}.action: missing")
        action = _action(call, f"{field}.action", f"{field}.errnoRet")
        alternatives = _conditions(_list(call.get("args"), f"{field}.args"), f"{field}.args")
        if not _applies(call, field, caps):
            continue
        for name in names:
            rules.append((name, action, alternatives))
    return _Profile(default, arches, rules, tuple(attrs))
