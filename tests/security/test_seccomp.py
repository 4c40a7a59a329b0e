"""The seccomp filter on the real kernel (security.md 8.3 P0-S1..S3 and 8.6 P1-S4).

Each test forks; the child loads a filter built by `ruripy.sandbox.seccomp.prepare` (as root,
or after switching to the unprivileged test user) and execs a small C probe, compiled here
with gcc, which makes system calls and prints the errno it got. The assertions are the exact
errnos a program in the container sees.
"""

import errno
import json
import os
import shutil
import signal
import tempfile

import pytest
from probes import build, run_filtered

from ruripy.errors import RuripyError
from ruripy.sandbox import seccomp, seccomp_cache

EPERM = f"E{errno.EPERM}"
ENOSYS = f"E{errno.ENOSYS}"
IS_X86_64 = os.uname().machine == "x86_64"
TIOCSTI, TIOCLINUX = 0x5412, 0x541C


@pytest.fixture(scope="module")
def lib():
    try:
        return seccomp._lib()
    except RuripyError as e:
        pytest.skip(f"libseccomp2 is not installed: {e}")


@pytest.fixture(scope="module")
def probe(lib):
    os.makedirs("/tmp/ruripy-tests", exist_ok=True)
    os.chmod("/tmp/ruripy-tests", 0o755)
    d = tempfile.mkdtemp(prefix="seccomp-probe.", dir="/tmp/ruripy-tests")
    os.chmod(d, 0o755)
    yield build("seccomp_probe", d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["root", "user"])
def who(request):
    """Each test taking it runs twice: as root and as the unprivileged test user."""
    if os.geteuid() != 0:
        pytest.skip("these tests start as root (and switch to the test user for 'user')")
    if request.param == "root":
        return None
    return request.getfixturevalue("test_user")


def nr(lib, name: str) -> int:
    n = lib.syscall_number(name)
    assert n >= 0, f"{name} has no native number here"
    return n


def arch_nr(lib, arch: str, name: str) -> int:
    n = lib.syscall_number_arch(lib.arch_token(arch), name)
    assert n >= 0, f"{name} has no number on {arch}"
    return n


def sys(lib, name: str, *args: int) -> str:
    """A probe check calling `name` natively with numeric arguments."""
    return ":".join(["sys", str(nr(lib, name)), *(hex(a) for a in args)])


def run(probe, checks, flt=None, user=None, in_process=False, prepare_args=None):
    argv = [probe, *(["-n"] if in_process else []), *checks]
    return run_filtered(argv, flt=flt, user=user, prepare_args=prepare_args)


def i386_works(probe) -> bool:
    """The host runs 32-bit x86 system calls (ia32 emulation), checked without a filter."""
    return IS_X86_64 and run(probe, ["i386:20"])["i386:20"] == "ok"


# --- P0-S1 ------------------------------------------------------------------------------------


def default_expectations(lib) -> dict[str, str]:
    """Probe checks and the errno the default policy must answer, from security.md P0-S1."""
    return {
        sys(lib, "keyctl", 0xFFFF): EPERM,
        sys(lib, "add_key", 0): EPERM,
        sys(lib, "request_key", 0): EPERM,
        sys(lib, "kexec_load", 0, 0, 0, 0xFFFFFFFF): EPERM,
        sys(lib, "bpf", 0xFFFF): EPERM,
        sys(lib, "userfaultfd", 0xFFFFFFFF): EPERM,
        sys(lib, "io_uring_setup", 0, 0): EPERM,
        sys(lib, "mount", 0, 0, 0, 0, 0): EPERM,
        sys(lib, "unshare", 0x10000000): EPERM,  # CLONE_NEWUSER
        "clone:0x20000": EPERM,  # CLONE_NEWNS
        "clone:0x10000000": EPERM,  # CLONE_NEWUSER
        sys(lib, "socket", 40, 1, 0): EPERM,  # AF_VSOCK
        sys(lib, "socket", 38, 5, 0): EPERM,  # AF_ALG
        sys(lib, "socket", 40 | 1 << 32, 1, 0): EPERM,  # the kernel reads an int
        sys(lib, "clone3", 0, 0): ENOSYS,
        sys(lib, "setns", 0xFFFFFFFF, 0): EPERM,
        sys(lib, "personality", 0x0040000): EPERM,  # ADDR_NO_RANDOMIZE
    }


def test_P0_S1_default_filter_active(probe, lib, who):
    """prepare and load both in the forked child, as root or after becoming the test user."""
    want = default_expectations(lib)
    got = run(probe, ["status", *want], user=who, prepare_args=("default",))
    assert got["status"] == "Seccomp=2,NoNewPrivs=1"
    assert {c: got[c] for c in want} == want


def test_P0_S1_every_unconditional_row_is_denied(probe, lib, who):
    """Every always-denied row of the policy table that exists natively answers its errno."""
    want = {}
    for name, err, cond, _caps, _why in seccomp.POLICY:
        n = lib.syscall_number(name)
        if cond is None and n >= 0:
            want[f"sys:{n}"] = f"E{err}"
    assert len(want) > 40
    got = run(probe, list(want), flt=seccomp.prepare(), user=who)
    assert {c: got[c] for c in want} == want


# --- the program cache: what run and exec load ---------------------------------------------------


def test_P0_S1_cached_program_is_libseccomp_s_and_enforces(probe, lib, who, tmp_path):
    """run/exec compile the default policy once and keep the program in the store: it is
    byte for byte what libseccomp builds, and loaded from the cache it denies the same calls."""
    cache = str(tmp_path / "seccomp.marshal")
    first = seccomp_cache.prepare("default", cache=cache)
    assert isinstance(first, seccomp_cache.Program)
    assert oct(os.stat(cache).st_mode & 0o777) == "0o600"
    flt = seccomp.prepare("default")
    assert first.bpf == flt.export()
    flt.release()
    again = seccomp_cache.prepare("default", cache=cache)
    assert again.bpf == first.bpf
    want = default_expectations(lib)
    got = run(probe, ["status", *want], flt=again, user=who)
    assert got["status"] == "Seccomp=2,NoNewPrivs=1"
    assert {c: got[c] for c in want} == want


def test_P1_S4_cached_deny_syscall_program(probe, lib, workdir, tmp_path):
    """--seccomp off --deny-syscall mkdir is cached under its own key."""
    cache = str(tmp_path / "seccomp.marshal")
    seccomp_cache.prepare("default", cache=cache)
    seccomp_cache.prepare("off", ["mkdir"], cache=cache)
    prog = seccomp_cache.prepare("off", ["mkdir"], cache=cache)
    assert len(seccomp_cache._read(cache)) == 2
    target = os.path.join(workdir, "made")
    keyctl = sys(lib, "keyctl", 0xFFFF)
    got = run(probe, [f"mkdir:{target}", keyctl], flt=prog)
    assert (got[f"mkdir:{target}"], got[keyctl]) == (EPERM, f"E{errno.EOPNOTSUPP}")


ALLOW_ALL = bytes([0x06, 0, 0, 0, 0, 0, 0xFF, 0x7F])  # BPF_RET|BPF_K SECCOMP_RET_ALLOW


def _forge(cache: str) -> None:
    """A cache whose entry for the default policy allows every call."""
    import marshal

    with open(cache, "wb") as f:
        f.write(marshal.dumps({seccomp_cache._key("default", [], None): ALLOW_ALL}))
    os.chmod(cache, 0o600)


@pytest.mark.parametrize("how", ["ours", "group-writable", "other-owner", "symlink"])
def test_P0_S1_cache_is_trusted_only_when_ours_alone(probe, lib, tmp_path, test_user, how):
    """The cached program is what confines the container: a cache file another user could
    have written (or a symlink to one) is ignored and the policy compiled again."""
    cache = str(tmp_path / "seccomp.marshal")
    if how == "symlink":
        real = str(tmp_path / "elsewhere")
        _forge(real)
        os.symlink(real, cache)
    else:
        _forge(cache)
    if how == "group-writable":
        os.chmod(cache, 0o620)
    elif how == "other-owner":
        os.chown(cache, test_user.pw_uid, test_user.pw_gid)
    mount = sys(lib, "mount", 0, 0, 0, 0, 0)
    got = run(probe, [mount], flt=seccomp_cache.prepare("default", cache=cache))
    # Only a cache of ours alone is used (which shows the others were really read and refused).
    assert got[mount] == ("E14" if how == "ours" else EPERM)  # EFAULT: the kernel's answer


def test_P0_S1_filter_answers_not_the_kernel(probe, lib):
    """No-seccomp baseline (bubblewrap style): without the filter these calls get other answers,
    so the EPERM/ENOSYS above comes from the filter and not from missing privileges."""
    want = default_expectations(lib)
    base = run(probe, list(want))
    core = [
        sys(lib, "keyctl", 0xFFFF),
        sys(lib, "add_key", 0),
        sys(lib, "request_key", 0),
        sys(lib, "mount", 0, 0, 0, 0, 0),
        sys(lib, "unshare", 0x10000000),
        "clone:0x20000",
        sys(lib, "clone3", 0, 0),
        sys(lib, "setns", 0xFFFFFFFF, 0),
        sys(lib, "personality", 0x0040000),
    ]
    assert {c: base[c] for c in core if base[c] == want[c]} == {}


def test_P0_S1_sub_architectures_share_the_rules(probe, lib):
    """x86 (int 0x80) and x32 calls meet the same rules instead of slipping past them."""
    if not IS_X86_64:
        pytest.skip("the x86 and x32 sub-architectures exist only on x86_64 hosts")
    if not i386_works(probe):
        pytest.skip("this kernel runs no 32-bit x86 system calls (ia32 emulation off)")
    checks = {
        f"i386:{arch_nr(lib, 'x86', 'keyctl')}:0xffff": EPERM,
        f"i386:{arch_nr(lib, 'x86', 'mount')}": EPERM,
        f"i386:{arch_nr(lib, 'x86', 'umount')}": EPERM,  # x86 only
        f"i386:{arch_nr(lib, 'x86', 'vm86old')}": EPERM,  # x86 only
        f"i386:{arch_nr(lib, 'x86', 'unshare')}:0x10000000": EPERM,
        f"i386:{arch_nr(lib, 'x86', 'ioctl')}:0:{TIOCSTI:#x}": EPERM,
        f"i386:{arch_nr(lib, 'x86', 'clone3')}": ENOSYS,
        f"i386:{arch_nr(lib, 'x86', 'getpid')}": "ok",
        # x32: the filter answers before the kernel looks for the ABI (absent on most kernels)
        f"x32:{arch_nr(lib, 'x32', 'keyctl') & 0xFFFF}:0xffff": EPERM,
        f"x32:{arch_nr(lib, 'x32', 'ioctl') & 0xFFFF}:0:{TIOCSTI:#x}": EPERM,
    }
    got = run(probe, list(checks), flt=seccomp.prepare())
    assert {c: got[c] for c in checks} == checks
    x32_getpid = f"x32:{arch_nr(lib, 'x32', 'getpid') & 0xFFFF}"
    assert run(probe, [x32_getpid], flt=seccomp.prepare())[x32_getpid] in ("ok", ENOSYS)


def test_P0_S1_capabilities_lift_their_rules(probe, lib):
    """With CAP_SYS_ADMIN kept (--cap-add SYS_ADMIN) the mount and namespace rules are left out,
    as in Docker; the rules tied to no capability stay."""
    admin = 1 << 21
    flt = seccomp.prepare("default", caps=admin)
    mount = sys(lib, "mount", 0, 0, 0, 0, 0)
    keyctl = sys(lib, "keyctl", 0xFFFF)
    clone3 = sys(lib, "clone3", 0, 0)
    got = run(probe, [mount, keyctl, clone3, "clone:0x20000"], flt=flt)
    assert got[mount] == f"E{errno.EFAULT}"  # reached the kernel
    assert got[clone3] == f"E{errno.EINVAL}"
    assert got["clone:0x20000"] == "ok"
    assert got[keyctl] == EPERM


# --- P0-S2 ------------------------------------------------------------------------------------


def test_P0_S2_ordinary_syscalls_work(probe, lib, who, workdir):
    checks = [
        "fork-exec",
        "spawn",  # glibc tries clone3 first: ENOSYS must make it fall back to clone
        "thread",
        "pipe",
        "unix",
        "inet",
        f"files:{workdir}",
        "getdents:/",
        "mmap",
        sys(lib, "getpid"),
        sys(lib, "personality", 0xFFFFFFFF),  # the query
        sys(lib, "personality", 0),
        sys(lib, "personality", 8),  # PER_LINUX32
        sys(lib, "socket", 1, 1, 0),  # AF_UNIX
        sys(lib, "socket", 2, 2, 0),  # AF_INET datagram
        "clone:0",  # a plain clone, as fork() makes it
    ]
    got = run(probe, checks, flt=seccomp.prepare(), user=who)
    assert {c: got[c] for c in checks} == dict.fromkeys(checks, "ok"), got.output


def test_P0_S2_ordinary_32bit_syscalls_work(probe, lib, who):
    """A 32-bit x86 program keeps working: plain calls and socketcall(SYS_SOCKET) (the way
    32-bit glibc opens sockets) are not caught by the socket family rule."""
    if not i386_works(probe):
        pytest.skip("needs an x86_64 kernel that runs 32-bit x86 system calls")
    checks = [
        f"i386:{arch_nr(lib, 'x86', 'getpid')}",
        f"i386:{arch_nr(lib, 'x86', 'personality')}:0xffffffff",
        "socketcall:1:1",  # AF_UNIX, SOCK_STREAM
        "socketcall:2:2",  # AF_INET, SOCK_DGRAM
    ]
    got = run(probe, checks, flt=seccomp.prepare(), user=who)
    assert {c: got[c] for c in checks} == dict.fromkeys(checks, "ok")


def test_P0_S2_busybox_shell_runs(who):
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed")
    script = (
        "ls / >/dev/null && echo hello | cat && sh -c 'exit 3'; echo status=$? && "
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status | tr -s ' \\t' ' '"
    )
    got = run_filtered(["/bin/busybox", "sh", "-c", script], flt=seccomp.prepare(), user=who)
    assert got.exit_code == 0
    assert got.output.split("\n") == ["hello", "status=3", "NoNewPrivs: 1", "Seccomp: 2", ""]


# --- P0-S3 ------------------------------------------------------------------------------------


def test_P0_S3_tiocsti_masked_compare(probe, who):
    checks = {
        f"ioctl:{TIOCSTI:#x}": EPERM,
        f"ioctl:{TIOCSTI | 1 << 32:#x}": EPERM,  # a plain 64-bit compare misses this
        f"ioctl:{TIOCSTI | 0xFFFF << 48:#x}": EPERM,
        f"ioctl:{TIOCLINUX:#x}": EPERM,
        f"ioctl:{TIOCLINUX | 1 << 32:#x}": EPERM,
        f"ioctl:{0x5413:#x}": f"E{errno.ENOTTY}",  # TIOCGWINSZ passes to the kernel
    }
    got = run(probe, list(checks), flt=seccomp.prepare(), user=who)
    assert {c: got[c] for c in checks} == checks
    # Without the filter the kernel answers ENOTTY (the fd is /dev/null) for all of them,
    # including TIOCSTI | 1 << 32, which it truncates to TIOCSTI.
    base = run(probe, list(checks), user=who)
    assert set(base.results.values()) == {f"E{errno.ENOTTY}"}


# --- P1-S4 and profile files ------------------------------------------------------------------


def write_profile(directory: str, doc: dict) -> str:
    path = os.path.join(directory, "profile.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    os.chmod(path, 0o644)
    return path


def test_P1_S4_unknown_syscall_numbers_get_enosys(probe, lib, who):
    """The default policy allows what it does not name, so a number no kernel knows reaches
    the kernel and gets ENOSYS (not EPERM), natively and on the 32-bit ABI."""
    got = run(probe, ["sys:1000", "sys:0x3ff"], flt=seccomp.prepare(), user=who)
    assert got["sys:1000"] == ENOSYS
    assert got["sys:0x3ff"] == ENOSYS
    if i386_works(probe):
        assert run(probe, ["i386:1000"], flt=seccomp.prepare())["i386:1000"] == ENOSYS


def test_P1_S4_profile_errno_100_on_mkdir(probe, workdir, who):
    path = write_profile(
        workdir,
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 100}
            ],
        },
    )
    target = os.path.join(workdir, "made")
    got = run(probe, [f"mkdir:{target}", "status"], flt=seccomp.prepare(path), user=who)
    assert got[f"mkdir:{target}"] == "E100"
    assert got["status"] == "Seccomp=2,NoNewPrivs=1"
    assert not os.path.exists(target)


@pytest.mark.parametrize(
    "action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"]
)
def test_P1_S4_profile_kill_rule_ends_probe_with_sigsys(probe, workdir, action):
    path = write_profile(
        workdir,
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": action}]},
    )
    target = os.path.join(workdir, "made")
    got = run(probe, [f"mkdir:{target}"], flt=seccomp.prepare(path), in_process=True)
    assert got.signal == signal.SIGSYS
    assert got.output == ""
    assert not os.path.exists(target)


def test_P1_S4_deny_syscall_mkdir(probe, lib, workdir, who):
    target = os.path.join(workdir, "made")
    check = f"mkdir:{target}"
    keyctl = sys(lib, "keyctl", 0xFFFF)
    got = run(probe, [check, keyctl], flt=seccomp.prepare("default", deny=["mkdir"]), user=who)
    assert (got[check], got[keyctl]) == (EPERM, EPERM)
    # With --seccomp off the filter holds only the --deny-syscall rules.
    got = run(probe, [check, keyctl, "status"], flt=seccomp.prepare("off", deny=["mkdir"]))
    assert (got[check], got[keyctl]) == (EPERM, f"E{errno.EOPNOTSUPP}")
    assert got["status"] == "Seccomp=2,NoNewPrivs=1"
    assert not os.path.exists(target)
    assert seccomp.prepare("off") is None


def test_P1_S4_deny_syscall_on_top_of_a_profile(probe, workdir):
    path = write_profile(
        workdir,
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 100}],
        },
    )
    target = os.path.join(workdir, "made")
    got = run(probe, [f"mkdir:{target}"], flt=seccomp.prepare(path, deny=["mkdir"]))
    assert got[f"mkdir:{target}"] == EPERM


def all_native_names(lib) -> list[str]:
    import ctypes

    raw = ctypes.CDLL("libseccomp.so.2")
    f = raw.seccomp_syscall_resolve_num_arch
    f.argtypes = [ctypes.c_uint32, ctypes.c_int]
    f.restype = ctypes.c_char_p  # leaks a few bytes per name: fine in a test
    native = lib.arch_native()
    return sorted({f(native, n).decode() for n in range(0, 1024) if f(native, n)})


@pytest.mark.parametrize("default_errno", [errno.ENOSYS, errno.EPERM])
def test_P1_S4_allow_list_profile_default_errno(probe, lib, workdir, who, default_errno):
    """An allow-list profile: what it does not name gets its defaultErrnoRet - ENOSYS only
    when the profile says so. Unknown names in the profile are skipped."""
    names = [n for n in all_native_names(lib) if n not in ("mkdir", "mkdirat")]
    path = write_profile(
        workdir,
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": default_errno,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": names + ["no_such_syscall_in_any_kernel"], "action": "SCMP_ACT_ALLOW"}
            ],
        },
    )
    target = os.path.join(workdir, "made")
    checks = [f"mkdir:{target}", "sys:1000", "fork-exec", "thread", "pipe", "status"]
    got = run(probe, checks, flt=seccomp.prepare(path), user=who)
    want = f"E{default_errno}"
    assert (got[f"mkdir:{target}"], got["sys:1000"]) == (want, want)
    assert [got[c] for c in ("fork-exec", "thread", "pipe")] == ["ok"] * 3
    assert got["status"] == "Seccomp=2,NoNewPrivs=1"


def test_profile_argument_conditions(probe, lib, workdir):
    """Conditions on different arguments must all hold; several on one argument are
    alternatives (runc's reading); MASKED_EQ takes the mask in value, the datum in valueTwo."""
    path = write_profile(
        workdir,
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["socket"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 100,
                    "args": [
                        {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                        {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"},
                    ],
                },
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 101,
                    "args": [
                        {"index": 0, "value": 0x0040000, "op": "SCMP_CMP_EQ"},
                        {"index": 0, "value": 0x0200000, "op": "SCMP_CMP_EQ"},
                    ],
                },
                {
                    "names": ["ioctl"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 102,
                    "args": [
                        {
                            "index": 1,
                            "value": 0xFFFFFFFF,
                            "valueTwo": TIOCSTI,
                            "op": "SCMP_CMP_MASKED_EQ",
                        }
                    ],
                },
            ],
        },
    )
    checks = {
        sys(lib, "socket", 2, 2, 0): "E100",  # AF_INET + SOCK_DGRAM: both hold
        sys(lib, "socket", 2, 1, 0): "ok",  # AF_INET + SOCK_STREAM
        sys(lib, "socket", 1, 2, 0): "ok",  # AF_UNIX + SOCK_DGRAM
        sys(lib, "personality", 0x0040000): "E101",
        sys(lib, "personality", 0x0200000): "E101",
        sys(lib, "personality", 0xFFFFFFFF): "ok",
        f"ioctl:{TIOCSTI | 1 << 32:#x}": "E102",
        f"ioctl:{0x5413:#x}": f"E{errno.ENOTTY}",
    }
    got = run(probe, list(checks), flt=seccomp.prepare(path))
    assert {c: got[c] for c in checks} == checks


def test_profile_includes_caps(probe, workdir):
    """Docker's includes/excludes are judged against the container's capabilities."""
    path = write_profile(
        workdir,
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": ["mkdir"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 100,
                    "includes": {"caps": ["CAP_SYS_ADMIN"]},
                },
                {
                    "names": ["mkdir"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 101,
                    "excludes": {"caps": ["CAP_SYS_ADMIN"]},
                },
            ],
        },
    )
    target = os.path.join(workdir, "made")
    check = f"mkdir:{target}"
    assert run(probe, [check], flt=seccomp.prepare(path))[check] == "E101"
    admin = seccomp._caps_mask(None) | 1 << 21
    assert run(probe, [check], flt=seccomp.prepare(path, caps=admin))[check] == "E100"


def test_profile_without_architectures_kills_other_abis(probe, workdir):
    """A profile naming no architectures filters the native one only; libseccomp kills a
    process that calls through another ABI."""
    if not i386_works(probe):
        pytest.skip("needs an x86_64 kernel that runs 32-bit x86 system calls")
    path = write_profile(workdir, {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []})
    got = run(probe, ["i386:20", "sys:39"], flt=seccomp.prepare(path))
    assert (got["i386:20"], got["sys:39"]) == (f"S{signal.SIGSYS}", "ok")
    path = write_profile(
        workdir,
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [
                {
                    "architecture": "SCMP_ARCH_X86_64",
                    "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                },
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            ],
            "syscalls": [],
        },
    )
    assert run(probe, ["i386:20"], flt=seccomp.prepare(path))["i386:20"] == "ok"
