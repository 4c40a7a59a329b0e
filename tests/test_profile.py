"""Container profiles: TOML round trips and errors, the run-path cache, --set/--unset, and
importing ruri's k2v configs."""

import marshal
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruripy import options, profile, ruri_config
from ruripy.errors import RuripyError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = (
    "# ruripy container profile: the saved runtime options of this container.\n"
    "# Keys are the long option names with '_' for '-'; keys left out take their defaults.\n"
    "# Change it with 'ruripy config NAME --set KEY=VALUE' or '--unset KEY', or edit it here.\n"
    "\n"
)


@pytest.fixture
def cdir(tmp_path):
    d = tmp_path / "box"
    d.mkdir(mode=0o700)
    return d


def write(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def error_of(fn, *args):
    with pytest.raises(RuripyError) as e:
        fn(*args)
    assert e.value.status == 125
    return str(e.value)


def full(**changes):
    p = options.defaults()
    p.update(changes)
    return p


# -- save and load ---------------------------------------------------------------------------


def test_round_trip_writes_only_what_differs_from_the_defaults(cdir):
    prof = full(
        backend="rootless",
        user="1000:100",
        workdir="/home/user",
        env=["LANG=C.UTF-8", 'PS1=\\u "quoted"\n\ttab\x7f'],
        bind=["/srv/data:/data:ro", "/tmp:/tmp"],
        hostname="box",
        net="none",
        read_only=True,
        cap_add=["NET_ADMIN"],
        cap_drop=["ALL"],
        seccomp="/etc/ruripy/strict.json",
        deny_syscall=["mount"],
        unmask=True,
        no_new_privs=False,
        arch="arm64",
        memory=512 << 20,
        cpus=1.5,
        pids_limit=100,
        tty=True,
        command=["/bin/sh", "-c", "echo 'hi' \\o/"],
        entrypoint=["/init"],
    )
    path = str(cdir / "profile.toml")
    profile.save(path, prof)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(cdir / "profile.cache").st_mode & 0o777 == 0o600
    assert open(path).read() == HEADER + (
        'backend = "rootless"\n'
        'user = "1000:100"\n'
        'workdir = "/home/user"\n'
        'env = ["LANG=C.UTF-8", "PS1=\\\\u \\"quoted\\"\\n\\ttab\\u007f"]\n'
        'bind = ["/srv/data:/data:ro", "/tmp:/tmp"]\n'
        'hostname = "box"\n'
        'net = "none"\n'
        "read_only = true\n"
        'cap_add = ["NET_ADMIN"]\n'
        'cap_drop = ["ALL"]\n'
        'seccomp = "/etc/ruripy/strict.json"\n'
        'deny_syscall = ["mount"]\n'
        "unmask = true\n"
        "no_new_privs = false\n"
        'arch = "arm64"\n'
        "memory = 536870912\n"
        "cpus = 1.5\n"
        "pids_limit = 100\n"
        "tty = true\n"
        'command = ["/bin/sh", "-c", "echo \'hi\' \\\\o/"]\n'
        'entrypoint = ["/init"]\n'
    )
    assert profile.load(path) == prof
    assert marshal.loads((cdir / "profile.cache").read_bytes()) == prof
    assert profile.load_cached(str(cdir)) == prof


def test_defaults_save_as_the_header_alone(cdir):
    path = str(cdir / "profile.toml")
    profile.save(path, {})
    assert open(path).read() == HEADER
    assert profile.load(path) == options.defaults()


def test_save_normalises_and_checks(cdir):
    path = str(cdir / "profile.toml")
    profile.save(path, {"cap_add": ["cap_kill"], "memory": "1g", "arch": "x86_64"})
    assert profile.load(path) == full(cap_add=["KILL"], memory=1 << 30, arch="amd64")
    assert error_of(profile.save, path, {"memroy": "1g"}) == (
        "unknown key 'memroy' (did you mean 'memory'?); keys are the long runtime option "
        "names with '_' for '-', e.g. cap_add or read_only."
    )
    assert error_of(profile.save, path, {"net": "wifi"}) == (
        "net: unknown network mode 'wifi'; use host or none."
    )
    assert profile.load(path) == full(cap_add=["KILL"], memory=1 << 30, arch="amd64")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")),
        max_size=4,
    ),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30),
)
def test_any_text_survives_the_toml_writer(tmp_path_factory, command, value):
    d = tmp_path_factory.mktemp("p")
    path = str(d / "profile.toml")
    prof = full(command=command, env=[f"V={value}"])
    profile.save(path, prof)
    assert profile.load(path) == prof


def test_hand_written_profile_is_normalised(cdir):
    path = write(
        cdir / "profile.toml",
        "# mine\n"
        'cap_add = ["cap_net_admin", "sys_ptrace"]\n'
        'memory = "2G"\n'
        "cpus = 2\n"
        'arch = "aarch64"\n'
        'bind = ["/a:/b:rw"]\n',
    )
    assert profile.load(path) == full(
        cap_add=["NET_ADMIN", "SYS_PTRACE"], memory=2 << 30, cpus=2.0, arch="arm64", bind=["/a:/b"]
    )


def test_unknown_key_names_file_key_and_close_match(cdir):
    path = write(cdir / "profile.toml", 'read_only = true\nhost_name = "box"\n')
    assert error_of(profile.load, path) == (
        f"{path}: unknown key 'host_name' (did you mean 'hostname'?); keys are the long runtime "
        "option names with '_' for '-', e.g. cap_add or read_only."
    )
    path = write(cdir / "profile.toml", 'cap-add = ["KILL"]\n')
    assert error_of(profile.load, path) == (
        f"{path}: unknown key 'cap-add' (did you mean 'cap_add'?); keys are the long runtime "
        "option names with '_' for '-', e.g. cap_add or read_only."
    )
    path = write(cdir / "profile.toml", "colour = 3\n")
    assert error_of(profile.load, path) == (
        f"{path}: unknown key 'colour'; keys are the long runtime option names with '_' for "
        "'-', e.g. cap_add or read_only."
    )


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ('user = "a"\nread_only = tru\n', 2, "Invalid value"),
        ('user = "a"\n\n\nenv = ["A=1",\n', 4, "Invalid value"),
        ('user = "a"\nuser = "b"\n', 2, "Cannot overwrite a value"),
        ('hostname = "unclosed\n', 1, "Illegal character '\\n'"),
        ("[section\n", 1, "Expected ']' at the end of a table declaration"),
        ('user = "a"\nenv = ["A=1"', 2, "Unclosed array"),
    ],
)
def test_broken_toml_names_the_file_and_line(cdir, text, line, reason):
    path = write(cdir / "profile.toml", text)
    assert error_of(profile.load, path) == (
        f"{path}, line {line}: invalid TOML ({reason}); fix that line, or delete the file to "
        "go back to the defaults."
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ('read_only = "yes"', "read_only must be true or false, not a string."),
        ("user = 1000", "user must be a string, not an integer."),
        ('env = "A=1"', "env must be a list of strings, not a string."),
        ("cap_add = [1, 2]", "cap_add must be a list of strings, not a list of other values."),
        ("pids_limit = 1.5", "pids_limit must be a whole number, not a float."),
        ('cpus = "2"', "cpus must be a number, not a string."),
        ("memory = true", 'memory must be a size (a number of bytes, or a string like "512m"), '
         "not true/false."),
        ("net = false", "net must be one of host, none, not true/false."),
        ("[user]\nname = 'x'", "user must be a string, not a table."),
        ("workdir = 1979-05-27", "workdir must be a string, not a date or time."),
    ],
)  # fmt: skip
def test_wrong_type_names_file_key_and_type(cdir, text, message):
    path = write(cdir / "profile.toml", text + "\n")
    assert error_of(profile.load, path) == f"{path}: {message}"


def test_bad_value_names_file_and_key(cdir):
    path = write(cdir / "profile.toml", 'bind = ["/srv:/"]\n')
    assert error_of(profile.load, path) == (
        f"{path}: bind: '/srv:/' would cover the container's root; choose a folder such as "
        "/mnt/host."
    )
    path = write(cdir / "profile.toml", 'seccomp = "strict.json"\n')
    assert error_of(profile.load, path) == (
        f"{path}: seccomp: 'strict.json' is a relative path; give the absolute path of the "
        "seccomp profile file."
    )
    path = write(cdir / "profile.toml", "pids_limit = 0\n")
    assert error_of(profile.load, path) == (
        f"{path}: pids_limit: 0 is not a whole number above 0; e.g. 1024."
    )


def test_missing_and_undecodable_files(cdir):
    path = str(cdir / "profile.toml")
    assert error_of(profile.load, path) == f"{path} does not exist."
    (cdir / "profile.toml").write_bytes(b'user = "a"\nhostname = "\xff"\n')
    assert error_of(profile.load, path) == f"{path}, line 2: not UTF-8 text; fix that line."


# -- the run-path cache ----------------------------------------------------------------------


def test_cache_is_used_when_fresh(cdir):
    path = str(cdir / "profile.toml")
    profile.save(path, {"hostname": "fromtoml"})
    # A cache that says something else, as new as the TOML: it wins (nothing is parsed).
    planted = full(hostname="fromcache")
    (cdir / "profile.cache").write_bytes(marshal.dumps(planted))
    t = os.stat(path).st_mtime_ns
    os.utime(cdir / "profile.cache", ns=(t, t))
    assert profile.load_cached(str(cdir)) == planted


def test_cache_is_ignored_and_rewritten_when_the_toml_is_newer(cdir):
    path = str(cdir / "profile.toml")
    profile.save(path, {"hostname": "old"})
    t = os.stat(cdir / "profile.cache").st_mtime_ns
    write(cdir / "profile.toml", 'hostname = "edited"\n')
    os.utime(path, ns=(t + 1, t + 1))
    assert profile.load_cached(str(cdir)) == full(hostname="edited")
    assert marshal.loads((cdir / "profile.cache").read_bytes()) == full(hostname="edited")
    assert os.stat(cdir / "profile.cache").st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "content",
    [b"garbage", marshal.dumps(["not", "a", "dict"]), marshal.dumps({"hostname": "partial"})],
)
def test_damaged_or_foreign_cache_falls_back_to_the_toml(cdir, content):
    path = str(cdir / "profile.toml")
    profile.save(path, {"hostname": "real"})
    (cdir / "profile.cache").write_bytes(content)
    assert profile.load_cached(str(cdir)) == full(hostname="real")
    assert marshal.loads((cdir / "profile.cache").read_bytes()) == full(hostname="real")


def test_missing_cache_is_made_and_missing_profile_means_defaults(cdir):
    assert profile.load_cached(str(cdir)) == options.defaults()
    assert not (cdir / "profile.cache").exists()
    write(cdir / "profile.toml", "tty = true\n")
    assert profile.load_cached(str(cdir)) == full(tty=True)
    assert marshal.loads((cdir / "profile.cache").read_bytes()) == full(tty=True)


def test_broken_toml_is_reported_by_load_cached(cdir):
    path = write(cdir / "profile.toml", "tty = yes\n")
    assert error_of(profile.load_cached, str(cdir)) == (
        f"{path}, line 1: invalid TOML (Invalid value); fix that line, or delete the file to go "
        "back to the defaults."
    )


def test_load_cached_does_not_import_the_toml_parser(cdir):
    profile.save(str(cdir / "profile.toml"), {"hostname": "box"})
    code = (
        "import sys; from ruripy import profile; p = profile.load_cached(sys.argv[1]); "
        "print(p['hostname'], 'tomllib' in sys.modules, 'difflib' in sys.modules)"
    )
    run = [sys.executable, "-S", "-c", code, str(cdir)]
    out = subprocess.run(run, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out == "box False False\n"
    os.unlink(cdir / "profile.cache")  # the fall-back parses the TOML
    out = subprocess.run(run, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out == "box True False\n"


# -- config --set / --unset ------------------------------------------------------------------


def test_set_values_and_unset():
    prof = full(cap_add=["KILL"], env=["A=1"])
    got = profile.set_values(
        prof,
        ["read_only=yes", "cap_add=NET_ADMIN", "cap_add=SYS_PTRACE,sys_nice", "env=B=2",
         "memory=1g", "command=/bin/sh -l"],
    )  # fmt: skip
    assert got is prof
    assert prof == full(
        read_only=True,
        cap_add=["NET_ADMIN", "SYS_PTRACE", "SYS_NICE"],
        env=["B=2"],
        memory=1 << 30,
        command=["/bin/sh", "-l"],
    )
    assert profile.unset(prof, ["read_only", "cap-add", "memory", "command"]) is prof
    assert prof == full(env=["B=2"])
    assert profile.unset(prof, ["no_new_privs", "env"]) == options.defaults()


def test_set_values_changes_nothing_when_one_assignment_is_bad():
    prof = full(hostname="box")
    assert error_of(profile.set_values, prof, ["hostname=new", "cpus=lots"]) == (
        "cpus: 'lots' is not a number of CPUs; give a number above 0 and at most 1024."
    )
    assert prof == full(hostname="box")
    assert error_of(profile.unset, prof, ["hostname", "hostnmae"]) == (
        "unknown key 'hostnmae' (did you mean 'hostname'?); keys are the long runtime option "
        "names with '_' for '-', e.g. cap_add or read_only."
    )
    assert prof == full(hostname="box")


# -- ruri's k2v configs ----------------------------------------------------------------------

ALL_CAPS = [c.lower() for c in options.CAPABILITIES]
# ruri 3.9-beta1 keeps these 12 (CapBnd 00000000a00405fb); this config also keeps
# sys_ptrace, drops kill, and names checkpoint_restore by number as libcap does when it
# does not know the name.
RURI_KEPT = [
    "chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "net_bind_service", "sys_chroot", "audit_write", "setfcap",
]  # fmt: skip
DROPS = [
    "cap_" + c if c != "checkpoint_restore" else "40"
    for c in ALL_CAPS
    if (c not in RURI_KEPT or c == "kill") and c != "sys_ptrace"
]

BETA1 = (
    "#!/usr/bin/ruri -c\n"
    "# The CONTAINER_DIR.\n"
    "# Should be an absolute path on host.\n"
    "# This can not be empty.\n"
    'container_dir="/data/ruri/debian"\n'
    "\n"
    "# The user to run command in the container.\n"
    "# Use username or uid is both valid.\n"
    "# Default is root, set it to empty to use default.\n"
    'user="alice"\n'
    "\n"
    "# The capability to drop.\n"
    '# Format: "capname1","capname2".\n'
    '# For example, ["cap_sys_admin","cap_sys_chroot"] is valid.\n'
    "drop_caplist=[" + ",".join(f'"{c}"' for c in DROPS) + "]\n"
    "\n"
    "# Set NO_NEW_PRIVS bit.\n"
    'no_new_privs="false"\n'
    'enable_unshare="true"\n'
    'rootless="false"\n'
    'no_warnings="false"\n'
    "# For example, x86_64.\n"
    'cross_arch="aarch64"\n'
    'qemu_path="/usr/bin/qemu-aarch64-static"\n'
    'use_rurienv="true"\n'
    'enable_seccomp="true"\n'
    "# Can be 1 or 2, set <=0 to use default.\n"
    'hidepid="2"\n'
    'cpuset="0-1"\n'
    'cpupercent="50"\n'
    "# For example, 1G or 1024M is valid.\n"
    'memory="1G"\n'
    'just_chroot="false"\n'
    'unmask_dirs="true"\n'
    'mount_host_runtime="false"\n'
    'work_dir="/root"\n'
    'rootfs_source=""\n'
    'ro_root="true"\n'
    'no_network="true"\n'
    'use_kvm="true"\n'
    'oom_score_adj="500"\n'
    "# Extra mountpoint.\n"
    'extra_mountpoint=["/sdcard","/sdcard","TMPFS:1M","/tmp/t","/data/img.ext4","/"]\n'
    'extra_ro_mountpoint=["/etc/resolv.conf","/etc/resolv.conf"]\n'
    'env=["LANG","C.UTF-8","PS1","\\\\u@\\\\h \\"box\\" $ ","9BAD","x"]\n'
    'char_devs=["kvm","10","232"]\n'
    'command=["/bin/bash","-l"]\n'
    'hostname="phone"\n'
    'timens_monotonic_offset="0"\n'
    'timens_realtime_offset="3600"\n'
    'deny_syscall=["reboot","swapon"]\n'
)


def test_ruri_beta1_config_is_mapped(tmp_path):
    path = write(tmp_path / "debian.conf", BETA1, 0o755)  # ruri -o: 0777 & ~umask
    prof, notes = ruri_config.to_profile(path)
    assert prof == full(
        user="alice",
        cap_add=["SYS_PTRACE"],
        cap_drop=["KILL", "NET_RAW", "MKNOD"],
        no_new_privs=True,
        seccomp="default",
        arch="arm64",
        cpus=0.5,
        memory=1 << 30,
        unmask=True,
        workdir="/root",
        read_only=True,
        net="none",
        bind=["/sdcard:/sdcard", "/etc/resolv.conf:/etc/resolv.conf:ro"],
        env=["LANG=C.UTF-8", 'PS1=\\u@\\h "box" $ '],
        command=["/bin/bash", "-l"],
        hostname="phone",
        deny_syscall=["reboot", "swapon"],
    )
    assert notes == [
        "qemu_path: ruripy finds qemu-user itself (see --arch)",
        "hidepid: /proc is not mounted with hidepid",
        "cpuset: pinning to CPUs is not supported; use --cpus",
        "use_kvm: no /dev/kvm passthrough",
        "oom_score_adj: the OOM score of the container is not adjusted",
        "extra_mountpoint: 'TMPFS:1M' is not a plain host path (tmpfs, overlay and flagged "
        "mounts are not supported)",
        "extra_mountpoint: mounting '/data/img.ext4' as the rootfs is not supported",
        "env: '9BAD' is not a valid variable name",
        "char_devs: extra device nodes are not supported",
        "timens_realtime_offset: time namespace offsets are not supported",
    ]
    # The result is a profile that saves and loads as it is.
    profile.save(str(tmp_path / "profile.toml"), prof)
    assert profile.load(str(tmp_path / "profile.toml")) == prof
    assert ruri_config.read(path)["container_dir"] == "/data/ruri/debian"


def test_ruri_default_config_needs_nothing(tmp_path):
    # What `ruri -D` prints for a plain container: every key, all unset or off.
    default_drops = ["cap_" + c for c in ALL_CAPS if c not in RURI_KEPT]
    text = (
        'container_dir="/c"\nuser=""\n'
        "drop_caplist=[" + ",".join(f'"{c}"' for c in default_drops) + "]\n"
        'no_new_privs="false"\nenable_unshare="false"\nrootless="false"\n'
        'no_warnings="false"\ncross_arch=""\nqemu_path=""\nuse_rurienv="true"\n'
        'enable_seccomp="false"\nhidepid="-114"\ncpuset=""\ncpupercent="-114"\nmemory=""\n'
        'just_chroot="false"\nunmask_dirs="false"\nmount_host_runtime="false"\nwork_dir=""\n'
        'rootfs_source=""\nro_root="false"\nno_network="false"\nuse_kvm="false"\n'
        'oom_score_adj="0"\nextra_mountpoint=[]\nextra_ro_mountpoint=[]\nenv=[]\n'
        'char_devs=[]\ncommand=[]\nhostname=""\ntimens_monotonic_offset="0"\n'
        'timens_realtime_offset="0"\ndeny_syscall=[""]\n'
    )
    path = write(tmp_path / "c.conf", text)
    prof, notes = ruri_config.to_profile(path)
    # ruri drops NET_RAW and MKNOD from Docker's default set; nothing else changes.
    assert prof == full(cap_drop=["NET_RAW", "MKNOD"])
    assert notes == []


def test_ruri_395_config_keys(tmp_path):
    text = (
        "#!/usr/bin/rurima ruri -c\n"
        'container_dir="/c"\n'
        "drop_caplist=[]\n"  # empty is unset: ruri keeps its default list
        'no_new_privs="true"\n'
        'enable_seccomp="false"\n'
        'enable_seccomp_whitelist="true"\n'
        'max_pids="256"\n'
        'io_device="8:0"\n'
        'io_rbps="-1"\n'
        'io_wbps="1048576"\n'
        'create_kvm_node="false"\n'
        'masked_path=["/proc/kcore"]\n'
        'enable_tty_signals="false"\n'
        'skip_setgroups="true"\n'
        'systemd_mode="true"\n'
        'enabled_flags=["no_pid_ns"]\n'
        'deny_syscall=["EPERM:mount","ptrace"]\n'
        'memory="512M"\n'
        'future_key="x"\n'
    )
    path = write(tmp_path / "c.conf", text)
    prof, notes = ruri_config.to_profile(path)
    assert prof == full(pids_limit=256, memory=512 << 20, deny_syscall=["mount", "ptrace"])
    assert notes == [
        "io_device: I/O limits are not supported",
        "io_wbps: I/O limits are not supported",
        "masked_path: extra masked paths are not supported",
        "skip_setgroups: skipping setgroups is not supported",
        "systemd_mode: running systemd as init is not supported",
        "enabled_flags: ruri's --set-flag flags have no ruripy equivalent",
        "future_key: not a key ruri writes; ignored",
    ]


def test_ruri_values_ruripy_refuses_become_notes(tmp_path):
    text = (
        'user="bad user"\nwork_dir="relative"\nhostname="a_b"\ncross_arch="mips"\n'
        'memory="lots"\ncpupercent="250"\nmax_pids="0"\ndrop_caplist=["cap_flying"]\n'
    )
    path = write(tmp_path / "c.conf", text)
    prof, notes = ruri_config.to_profile(path)
    assert prof == options.defaults()  # no known capability in the drop list: no change
    assert notes == [
        "user: 'bad user' is not a valid user; give USER or USER:GROUP as names from the "
        "container's /etc/passwd and /etc/group, or as numeric ids.",
        "work_dir: 'relative' is not an absolute path; give a folder inside the container "
        "starting with '/'.",
        "hostname: 'a_b' is not a valid hostname; use letters, digits and '-' in "
        "dot-separated labels of 1 to 63 characters, 64 characters in all.",
        "cross_arch: unknown architecture 'mips'; use one of amd64, arm64, armhf, armel, "
        "i386, riscv64, ppc64el, s390x, loong64.",
        "memory: 'lots' is not a size above zero; give a number of bytes with an optional k, "
        "m, g or t suffix, e.g. 512m or 2g.",
        "cpupercent: '250' is not a percentage from 1 to 100",
        "max_pids: '0' is not a whole number above 0; e.g. 1024.",
        "drop_caplist: unknown capability 'cap_flying' ignored",
    ]


HINT = 'ruri config lines look like key="value" or key=["a","b"].'


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ("#!/bin/ruri -c\nuser=alice\n", 2, "the value of 'user' is neither quoted nor an array"),
        ('\n\nuser="alice\n', 3, "a string is not closed with '\"'"),
        ('user="a\\"\n', 1, "a string is not closed with '\"'"),
        ('user="alice" # me\n', 1, "unexpected text after the value of 'user'"),
        ('command=["a","b"\n', 1, "the array of 'command' is not closed with ']'"),
        ('command=["a",b]\n', 1, "the array of 'command' holds a value without quotes"),
        ('command=["a",]\n', 1, "the array of 'command' holds a value without quotes"),
        ('env=["A","1","B"]\n', 1, "'env' must hold pairs, not 3 values"),
        ('extra_mountpoint=["/a"]\n', 1, "'extra_mountpoint' must hold pairs, not 1 value"),
        ('char_devs=["kvm","10"]\n', 1, "'char_devs' must hold groups of three, not 2 values"),
        ('user="a"\n# c\nuser="b"\n', 3, "duplicate key 'user' (first on line 1)"),
        ("just some words\n", 1, "'just some words' is not a key=value line"),
        ('="x"\n', 1, "'=\"x\"' is not a key=value line"),
        ('us er="x"\n', 1, "'us er=\"x\"' is not a key=value line"),
    ],
)
def test_malformed_k2v_names_the_file_and_line(tmp_path, text, line, problem):
    path = write(tmp_path / "c.conf", text)
    assert error_of(ruri_config.to_profile, path) == f"{path}, line {line}: {problem}; {HINT}"


def test_k2v_escapes_crlf_and_spacing(tmp_path):
    text = '  user = "a\\\\b\\"c" \r\ncommand=[ "x" , "y\\]" ]\r\n'
    path = write(tmp_path / "c.conf", text)
    assert ruri_config.read(path) == {"user": 'a\\b"c', "command": ["x", "y]"]}


def test_k2v_size_cap(tmp_path):
    filler = "#" + "x" * 98 + "\n"
    path = write(tmp_path / "big.conf", filler * 655 + 'user="a"\n' + "#" * 26)
    assert os.path.getsize(path) == 65535
    assert ruri_config.read(path) == {"user": "a"}
    path = write(tmp_path / "big.conf", filler * 655 + 'user="a"\n' + "#" * 27)
    assert error_of(ruri_config.to_profile, path) == (
        f"{path} is 64 KiB or larger; ruri configs are smaller than that."
    )


def test_k2v_missing_and_binary_files(tmp_path):
    path = str(tmp_path / "none.conf")
    assert error_of(ruri_config.to_profile, path) == (
        f"cannot read {path}: No such file or directory."
    )
    (tmp_path / "bin.conf").write_bytes(b'user="a"\n\x00\n')
    path = str(tmp_path / "bin.conf")
    assert error_of(ruri_config.to_profile, path) == f"{path}, line 2: a NUL character; remove it."
