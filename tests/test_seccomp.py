"""ruripy.sandbox.seccomp without a probe: the policy table, prepare's errors, profile parsing,
what prepare and load may import. The kernel-level tests live in tests/security/test_seccomp.py.
"""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruripy.errors import RuripyError
from ruripy.sandbox import seccomp, seccomp_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def lib():
    try:
        return seccomp._lib()
    except RuripyError as e:
        pytest.skip(f"libseccomp2 is not installed: {e}")


# --- the policy table ---------------------------------------------------------------------------

REQUIRED = (
    "keyctl add_key request_key kexec_load kexec_file_load bpf userfaultfd io_uring_setup "
    "io_uring_enter io_uring_register perf_event_open mount umount2 umount pivot_root unshare "
    "setns fsopen fsconfig fsmount fspick move_mount open_tree mount_setattr open_by_handle_at "
    "init_module finit_module delete_module reboot swapon swapoff acct lookup_dcookie quotactl "
    "syslog settimeofday clock_settime clock_adjtime adjtimex nfsservctl uselib ustat sysfs "
    "vm86 vm86old personality socket clone clone3 ioctl"
)


def test_policy_covers_the_required_calls():
    names = [row[0] for row in seccomp.POLICY]
    assert set(REQUIRED.split()) <= set(names)
    assert len(names) == len(set(names)), "one row per system call"


def test_policy_rows_are_plain_data(lib):
    for name, err, cond, caps, why in seccomp.POLICY:
        assert lib.syscall_number(name) != -1, f"libseccomp does not know {name}"
        assert err in (1, 38)
        assert cond is None or cond[1] in ("in", "not_in", "any_bit")
        assert all(c in seccomp._caps.NUMBER for c in caps)
        assert why and "\n" not in why


def test_policy_errnos_and_argument_rules():
    rows = {row[0]: row for row in seccomp.POLICY}
    assert rows["clone3"][1] == 38  # ENOSYS: libc falls back to clone
    assert {r[1] for n, r in rows.items() if n != "clone3"} == {1}
    assert rows["clone"][2] == (0, "any_bit", 0x7E020000)
    assert rows["socket"][2] == (0, "in", (38, 40))
    assert rows["ioctl"][2] == (1, "in", (0x5412, 0x541C))
    assert rows["personality"][2] == (0, "not_in", (0, 8, 0x20000, 0x20008, 0xFFFFFFFF))


def test_ioctl_rules_compare_32_bits():
    """CVE-2019-10063: every ioctl rule is a masked compare of the low 32 bits."""
    rules = seccomp._condition_rules((1, "in", (0x5412, 0x541C)))
    assert rules == [
        [(1, seccomp.CMP_MASKED_EQ, 0xFFFFFFFF, 0x5412)],
        [(1, seccomp.CMP_MASKED_EQ, 0xFFFFFFFF, 0x541C)],
    ]


def test_clone_rule_is_one_masked_compare_per_namespace_flag():
    rules = seccomp._condition_rules((0, "any_bit", 0x7E020000))
    bits = sorted(r[0][2] for r in rules)
    assert bits == [0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000]
    assert all(r == [(0, seccomp.CMP_MASKED_EQ, b, b)] for r, b in zip(rules, bits, strict=False))


def test_describe_rows():
    rows = seccomp.describe()
    assert len(rows) == len(seccomp.POLICY)
    json.dumps(rows)
    by_name = {r["syscall"]: r for r in rows}
    assert by_name["keyctl"] == {
        "syscall": "keyctl",
        "errno": "EPERM",
        "when": "always",
        "allowed_with": [],
        "reason": "kernel keyrings are not namespaced: keys would be shared with the host",
    }
    assert by_name["clone3"]["errno"] == "ENOSYS"
    assert by_name["ioctl"]["when"] == "arg1 & 0xffffffff in (0x5412, 0x541c)"
    assert by_name["clone"]["when"] == "arg0 & 0x7e020000 != 0"
    assert by_name["mount"]["allowed_with"] == ["CAP_SYS_ADMIN"]


ALLOWED = (0, 8, 0x20000, 0x20008, 0xFFFFFFFF)


def matches(blocks, x):
    return any(x & m == v for m, v in blocks)


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_personality_blocks_match_exactly_the_unsafe_values(x):
    blocks = seccomp.complement_blocks(ALLOWED)
    assert matches(blocks, x) == ((x & 0xFFFFFFFF) not in ALLOWED)


def lattice(values: set[int]) -> set[int]:
    """`values` closed under & and |."""
    out = set(values)
    while True:
        more = {op(p, q) for p in out for q in out for op in (int.__and__, int.__or__)} - out
        if not more:
            return out
        out |= more


@given(st.sets(st.integers(min_value=0, max_value=255), max_size=12), st.booleans())
def test_complement_blocks_are_exact(allowed, close):
    """Exhaustively over 8-bit values, for any set and for sets closed under & and |
    (which get the short "bit i set, bit j clear" patterns)."""
    if close:
        allowed = lattice(allowed)
    blocks = seccomp.complement_blocks(tuple(allowed), width=8)
    for x in range(256):
        assert matches(blocks, x) == (x not in allowed)


def test_personality_needs_32_rules():
    """The fewest possible: each single-bit value and each all-ones-but-one value needs its
    own pattern, and one pattern can cover one of each."""
    assert len(seccomp.complement_blocks(ALLOWED)) == 32
    assert len(seccomp._prefix_blocks(set(ALLOWED), 32)) == 82


def test_personality_edges():
    blocks = seccomp.complement_blocks(ALLOWED)
    for ok in ALLOWED + (1 << 32, 8 | 1 << 40):  # the kernel reads an unsigned int
        assert not matches(blocks, ok)
    for bad in (1, 0x0040000, 0x20009, 0xFFFFFFFE, 0x0400000, 0x80000000):
        assert matches(blocks, bad)


def test_capabilities_lift_rules():
    default = {r[0] for r in seccomp._policy_rules(seccomp._caps_mask(None), set())}
    assert {"mount", "unshare", "clone", "clone3", "bpf", "settimeofday"} <= default
    admin = {r[0] for r in seccomp._policy_rules(1 << 21, set())}
    assert {"mount", "unshare", "setns", "clone", "clone3", "bpf", "fsopen"}.isdisjoint(admin)
    assert {"keyctl", "pivot_root", "ioctl", "socket", "settimeofday"} <= admin
    bpf_only = {r[0] for r in seccomp._policy_rules(1 << 39, set())}
    assert "bpf" not in bpf_only and "mount" in bpf_only


# --- prepare --------------------------------------------------------------------------------------


def test_off_is_none():
    assert seccomp.prepare("off") is None
    assert seccomp.prepare("off", deny=()) is None
    assert seccomp.prepare("unconfined") is None  # Docker's word


def test_default_builds(lib):
    f = seccomp.prepare()
    assert isinstance(f, seccomp.Filter)
    assert f.description == "default"
    f.release()
    f.release()  # twice is harmless
    g = seccomp.prepare("default", deny=["mkdir", "mkdir"])
    assert g.description == "default + deny mkdir"


@pytest.mark.parametrize("name", ["frobnicate", "", "mk dir", "mkdir\0", "ünïcode"])
def test_unknown_deny_syscall(lib, name):
    with pytest.raises(RuripyError) as e:
        seccomp.prepare("default", deny=["mkdir", name])
    shown = name.replace("\0", "\\x00")  # control characters are escaped in messages
    assert str(e.value).startswith(f"unknown system call {shown} in --deny-syscall")
    assert e.value.status == 125


def test_deny_syscall_known_only_on_a_sub_architecture(lib):
    """vm86 exists only on 32-bit x86: naming it is accepted everywhere."""
    assert seccomp.prepare("off", deny=["vm86"]) is not None


def test_libseccomp_missing(monkeypatch):
    monkeypatch.setattr(seccomp, "_SONAME", "libseccomp-not-here.so.9")
    monkeypatch.setattr(seccomp, "_lib_cache", None)
    with pytest.raises(RuripyError) as e:
        seccomp.prepare()
    assert "install the libseccomp2 package or run with --seccomp off" in str(e.value)
    assert seccomp.prepare("off") is None  # off needs no library


def write(tmp_path, content) -> str:
    path = tmp_path / "profile.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


ALLOW = {"defaultAction": "SCMP_ACT_ALLOW"}


def rule(**kw):
    return {**ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", **kw}]}


BAD_PROFILES = [
    ("{not json", "not valid JSON"),
    ("[]", "expected a JSON object"),
    ({}, "defaultAction: missing"),
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "defaultAction: unknown or unsupported action"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "defaultAction: unknown or unsupported action"),
    ({"defaultAction": 3}, "defaultAction: expected a string"),
    ({**ALLOW, "defaultErrnoRet": 1}, "defaultErrnoRet: only meaningful with SCMP_ACT_ERRNO"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, "defaultErrnoRet: expected"),
    ({**ALLOW, "syscalls": {}}, "syscalls: expected a list"),
    ({**ALLOW, "syscalls": ["mkdir"]}, "syscalls[0]: expected an object"),
    ({**ALLOW, "syscalls": [{"action": "SCMP_ACT_KILL"}]}, "syscalls[0].names: missing"),
    ({**ALLOW, "syscalls": [{"names": "mkdir", "action": "SCMP_ACT_KILL"}]}, "expected a list"),
    ({**ALLOW, "syscalls": [{"names": [1], "action": "SCMP_ACT_KILL"}]}, "syscalls[0].names[0]"),
    ({**ALLOW, "syscalls": [{"names": ["mkdir"]}]}, "syscalls[0].action: missing"),
    (
        {**ALLOW, "syscalls": [{"name": "mkdir", "names": ["mkdir"], "action": "SCMP_ACT_KILL"}]},
        "syscalls[0]: give either name or names",
    ),
    (
        {**ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_BOOM"}]},
        "syscalls[0].action: unknown or unsupported action 'SCMP_ACT_BOOM'",
    ),
    (rule(errnoRet=5000), "syscalls[0].errnoRet: expected a whole number from 0 to 4095"),
    (rule(errnoRet=True), "syscalls[0].errnoRet"),
    (
        {**ALLOW, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 3}]},
        "syscalls[0].errnoRet: only meaningful with SCMP_ACT_ERRNO",
    ),
    (rule(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]), "syscalls[0].args[0].op"),
    (rule(args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]), "syscalls[0].args[0].index"),
    (rule(args=[{"value": 1, "op": "SCMP_CMP_EQ"}]), "syscalls[0].args[0].index"),
    (rule(args=[{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]), "syscalls[0].args[0].value"),
    (rule(args=[{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}]), "args[0].value"),
    (rule(args=[{"index": 0, "valueTwo": "x", "op": "SCMP_CMP_EQ"}]), "args[0].valueTwo"),
    (rule(args=[{"index": 0}]), "syscalls[0].args[0].op: expected a string"),
    (rule(args={"index": 0}), "syscalls[0].args: expected a list"),
    (rule(includes={"minKernel": "five"}), "syscalls[0].includes.minKernel"),
    (rule(excludes={"caps": "CAP_SYS_ADMIN"}), "syscalls[0].excludes.caps: expected a list"),
    (
        {**ALLOW, "architectures": ["SCMP_ARCH_X86_64"], "archMap": []},
        "give either architectures or archMap",
    ),
    ({**ALLOW, "architectures": ["x86_64"]}, "expected a name such as SCMP_ARCH_X86_64"),
    ({**ALLOW, "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}, "flags[0]: unsupported flag"),
]


@pytest.mark.parametrize(("content", "message"), BAD_PROFILES)
def test_malformed_profiles(lib, tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(RuripyError) as e:
        seccomp.prepare(path)
    assert str(e.value).startswith(f"seccomp profile {path}: ")
    assert message in str(e.value)


def test_missing_profile(lib, tmp_path):
    path = str(tmp_path / "nope.json")
    with pytest.raises(RuripyError) as e:
        seccomp.prepare(path)
    assert str(e.value) == (
        f"seccomp profile {path}: cannot read it (No such file or directory); "
        "give a JSON profile file, default or off."
    )


def test_profile_checks_deny_names_too(lib, tmp_path):
    with pytest.raises(RuripyError, match="unknown system call nope in --deny-syscall"):
        seccomp.prepare(write(tmp_path, ALLOW), deny=["nope"])


def test_profile_skips_unknown_syscalls_and_arches(lib, tmp_path):
    doc = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_NOT_ONE"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [
            {"names": ["read", "syscall_from_2031"], "action": "SCMP_ACT_ALLOW"},
            {"name": "write", "action": "SCMP_ACT_LOG", "comment": "older 'name' form"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},  # = default
        ],
    }
    f = seccomp.prepare(write(tmp_path, doc))
    assert f.description.endswith("profile.json")


def parsed(lib, doc, caps=None):
    return seccomp._parse_profile(lib, doc, seccomp._caps_mask(caps))


def test_profile_parsing(lib):
    p = parsed(
        lib,
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["a", "b"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["c"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7},
                {
                    "names": ["d"],
                    "action": "SCMP_ACT_KILL_PROCESS",
                    "args": [
                        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                        {"index": 2, "value": 4, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"},
                    ],
                },
                {
                    "names": ["e"],
                    "action": "SCMP_ACT_TRAP",
                    "args": [
                        {"index": 1, "value": 1, "op": "SCMP_CMP_GT"},
                        {"index": 1, "value": 9, "op": "SCMP_CMP_LT"},
                    ],
                },
            ],
        },
    )
    assert p.default == seccomp.act_errno(1)
    assert p.arches == [lib.arch_native()]
    assert p.rules == [
        ("a", seccomp.ACT_ALLOW, [[]]),
        ("b", seccomp.ACT_ALLOW, [[]]),
        ("c", seccomp.act_errno(7), [[]]),
        (
            "d",
            seccomp.ACT_KILL_PROCESS,
            [[(0, seccomp.CMP_EQ, 1, 0), (2, seccomp.CMP_MASKED_EQ, 4, 4)]],
        ),
        ("e", seccomp.ACT_TRAP, [[(1, seccomp.CMP_GT, 1, 0)], [(1, seccomp.CMP_LT, 9, 0)]]),
    ]


def test_profile_includes_and_excludes(lib):
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "?")
    release = os.uname().release.split(".")
    now = f"{release[0]}.{int(''.join(c for c in release[1] if c.isdigit()))}"

    def kept(call, caps=None):
        doc = {**ALLOW, "syscalls": [{"names": ["x"], "action": "SCMP_ACT_KILL", **call}]}
        return bool(parsed(lib, doc, caps).rules)

    assert kept({})
    assert not kept({"includes": {"caps": ["CAP_SYS_ADMIN"]}})
    assert kept({"includes": {"caps": ["CAP_SYS_ADMIN"]}}, caps=1 << 21)
    assert not kept({"includes": {"caps": ["CAP_SYS_ADMIN", "CAP_BPF"]}}, caps=1 << 21)
    assert kept({"includes": {"caps": ["CAP_CHOWN"]}})  # in the default set
    assert not kept({"excludes": {"caps": ["CAP_CHOWN"]}})
    assert kept({"excludes": {"caps": ["CAP_CHOWN", "CAP_NO_SUCH"]}}, caps=0)
    assert kept({"includes": {"arches": [machine, "s390x"]}})
    assert not kept({"includes": {"arches": ["s390x"]}})
    assert not kept({"excludes": {"arches": [machine]}})
    assert kept({"includes": {"minKernel": now}})
    assert kept({"includes": {"minKernel": "4.8"}})
    assert not kept({"includes": {"minKernel": "99.0"}})
    assert not kept({"excludes": {"minKernel": "4.8"}})
    assert kept({"excludes": {"minKernel": "99.0"}})


def test_profile_arch_map(lib):
    doc = {
        **ALLOW,
        "archMap": [
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            {
                "architecture": "SCMP_ARCH_X86_64",
                "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            },
        ],
    }
    arches = parsed(lib, doc).arches
    subs = seccomp.SUB_ARCHES.get(os.uname().machine)
    if subs is None:
        pytest.skip("no sub-architectures known for this machine")
    assert arches == [lib.arch_native(), *(lib.arch_token(a) for a in subs)]


# --- imports: nothing after entering the root ---------------------------------------------------


def test_prepare_imports_only_the_standard_library(tmp_path):
    code = (
        "import sys\n"
        "from ruripy.sandbox import seccomp, seccomp_cache\n"
        "seccomp.prepare('default', deny=['mkdir'])\n"
        "seccomp_cache.prepare('default', cache=sys.argv[1])\n"
        "seccomp_cache.prepare('default', cache=sys.argv[1])\n"
        "bad = {'subprocess', 'platform', 'shutil', 'ctypes.util', 'typing', 'json'}\n"
        "print(sorted(bad & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert out.stdout == "[]\n"


@pytest.mark.parametrize("cached", [False, True], ids=["libseccomp", "cached-program"])
def test_load_imports_nothing(lib, tmp_path, cached):
    """load() runs after the root changed: it must neither import nor load anything."""
    if cached:
        seccomp_cache.prepare(cache=str(tmp_path / "c"))
        flt = seccomp_cache.prepare(cache=str(tmp_path / "c"))
        assert isinstance(flt, seccomp_cache.Program)
    else:
        flt = seccomp.prepare()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            import builtins

            def trap(*args, **kwargs):
                os.write(w, b"import attempted\n")
                os._exit(3)

            sys.meta_path[:] = []
            sys.path_hooks[:] = []
            sys.path[:] = []
            builtins.__import__ = trap
            flt.load()
            with open("/proc/self/status", "rb") as f:
                status = f.read()
            os.write(w, b"Seccomp:\t2" in status and b"filtered\n" or b"not filtered\n")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    out = os.read(r, 1000)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert (out, os.waitstatus_to_exitcode(status)) == (b"filtered\n", 0)
