"""The runtime option table: spellings, checks and their messages, defaults, --set, merge."""

import os
import subprocess
import sys

import pytest

from ruripy import options
from ruripy.errors import RuripyError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def error_of(key, value):
    with pytest.raises(RuripyError) as e:
        options.check_value(key, value)
    assert e.value.status == 125
    return str(e.value)


# -- the table -------------------------------------------------------------------------------


def test_every_option_of_the_contract_is_in_the_table():
    # cli.md "Runtime options", plus the two keys set from OCI images and config --set.
    assert [o.key for o in options.OPTIONS] == [
        "backend", "user", "workdir", "env", "bind", "hostname", "net", "read_only",
        "cap_add", "cap_drop", "seccomp", "deny_syscall", "unmask", "no_new_privs", "arch",
        "memory", "cpus", "pids_limit", "tty", "command", "entrypoint",
    ]  # fmt: skip
    for o in options.OPTIONS:
        assert o.kind in options.KINDS
        assert o.help and "\n" not in o.help
        if o.long:
            assert o.key == o.long[2:].replace("-", "_")
    shorts = {o.short: o.key for o in options.OPTIONS if o.short}
    assert shorts == {"-u": "user", "-w": "workdir", "-e": "env", "-b": "bind", "-t": "tty"}
    assert options.EXEC_OPTION_KEYS == ("user", "workdir", "env", "tty")
    assert [o.key for o in options.OPTIONS if not o.long] == ["command", "entrypoint"]
    assert options.BY_FLAG["--cap-add"].key == "cap_add"
    assert options.BY_FLAG["-e"].key == "env"
    assert options.BY_FLAG["--allow-new-privs"].key == "no_new_privs"


def test_defaults():
    d = options.defaults()
    assert d == {
        "backend": "auto", "user": None, "workdir": None, "env": [], "bind": [],
        "hostname": None, "net": "host", "read_only": False, "cap_add": [], "cap_drop": [],
        "seccomp": "default", "deny_syscall": [], "unmask": False, "no_new_privs": True,
        "arch": None, "memory": None, "cpus": None, "pids_limit": None, "tty": False,
        "command": [], "entrypoint": [],
    }  # fmt: skip
    d["env"].append("A=1")
    assert options.defaults()["env"] == []  # fresh lists every time


def test_importing_the_table_is_cheap():
    code = (
        "import sys; before = set(sys.modules); import ruripy.options; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "ruripy.options" in out
    for heavy in ("re", "json", "tomllib", "dataclasses", "difflib", "shlex", "typing"):
        assert heavy not in out


# -- normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("backend", "proot", "proot"),
        ("user", "alice", "alice"),
        ("user", "1000:100", "1000:100"),
        ("user", "www-data:adm", "www-data:adm"),
        ("workdir", "/srv/app", "/srv/app"),
        ("env", "A=1", ["A=1"]),
        ("env", ["A=1", "B=", "A=3", "_x=a=b"], ["A=3", "B=", "_x=a=b"]),
        ("bind", ["/a:/b", "/a:/c:rw", "/d:/e:ro", "/a:/b"], ["/a:/b", "/a:/c", "/d:/e:ro"]),
        ("hostname", "box-1.example", "box-1.example"),
        ("hostname", "a" * 63, "a" * 63),
        ("net", "none", "none"),
        ("read_only", "yes", True),
        ("read_only", "0", False),
        ("read_only", True, True),
        ("cap_add", ["net_admin", "CAP_SYS_PTRACE", "Cap_Kill", "all", "12"],
         ["NET_ADMIN", "SYS_PTRACE", "KILL", "ALL"]),
        ("cap_drop", "cap_mknod", ["MKNOD"]),
        ("seccomp", "off", "off"),
        ("seccomp", "unconfined", "off"),
        ("seccomp", "/etc/ruripy/strict.json", "/etc/ruripy/strict.json"),
        ("deny_syscall", ["Mount", "_sysctl", "epoll_create1"],
         ["mount", "_sysctl", "epoll_create1"]),
        ("arch", "x86_64", "amd64"),
        ("arch", "aarch64", "arm64"),
        ("arch", "armv7l", "armhf"),
        ("arch", "armv5tel", "armel"),
        ("arch", "i686", "i386"),
        ("arch", "ppc64le", "ppc64el"),
        ("arch", "loongarch64", "loong64"),
        ("arch", "S390X", "s390x"),
        ("arch", "riscv64", "riscv64"),
        ("memory", "512m", 512 << 20),
        ("memory", "2G", 2 << 30),
        ("memory", "1048576", 1048576),
        ("memory", "1.5g", 3 << 29),
        ("memory", "64KiB", 64 << 10),
        ("memory", "10mb", 10 << 20),
        ("memory", 4096, 4096),
        ("cpus", "1.5", 1.5),
        ("cpus", 2, 2.0),
        ("cpus", "1024", 1024.0),
        ("pids_limit", "100", 100),
        ("pids_limit", 7, 7),
        ("tty", "on", True),
        ("command", ["/bin/sh", "-c", "echo hi"], ["/bin/sh", "-c", "echo hi"]),
        ("entrypoint", "/init", ["/init"]),
        ("user", None, None),
        ("env", None, []),
    ],
)  # fmt: skip
def test_values_are_normalised(key, value, expected):
    got = options.check_value(key, value)
    assert got == expected
    assert type(got) is type(expected)


def test_relative_seccomp_file_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert options.check_value("seccomp", "my.json") == str(tmp_path / "my.json")


# -- every message ---------------------------------------------------------------------------

MESSAGES = [
    ("backend", "docker",
     "--backend: unknown backend 'docker'; use one of auto, rootless, privileged, proot."),
    ("user", "a b",
     "--user: 'a b' is not a valid user; give USER or USER:GROUP as names from the "
     "container's /etc/passwd and /etc/group, or as numeric ids."),
    ("user", "a:b:c",
     "--user: 'a:b:c' is not a valid user; give USER or USER:GROUP as names from the "
     "container's /etc/passwd and /etc/group, or as numeric ids."),
    ("user", "",
     "--user: '' is not a valid user; give USER or USER:GROUP as names from the "
     "container's /etc/passwd and /etc/group, or as numeric ids."),
    ("user", "4294967295",
     "--user: '4294967295' is not a valid user; give USER or USER:GROUP as names from the "
     "container's /etc/passwd and /etc/group, or as numeric ids."),
    ("user", 1000, "--user: expected a string, not a whole number."),
    ("workdir", "srv",
     "--workdir: 'srv' is not an absolute path; give a folder inside the container "
     "starting with '/'."),
    ("env", "FOO", "--env: 'FOO' is not KEY=VALUE; write it as FOO=value."),
    ("env", "=x", "--env: '=x' is not KEY=VALUE; write it as KEY=value."),
    ("env", "1A=2", "--env: '1A' is not a valid variable name; use letters, digits and '_', "
     "not starting with a digit."),
    ("env", "A-B=2", "--env: 'A-B' is not a valid variable name; use letters, digits and '_', "
     "not starting with a digit."),
    ("env", "A=\0", "--env: 'A=\\x00' contains a NUL character; remove it."),
    ("env", "A=\udcff", "--env: 'A=\\udcff' is not valid UTF-8 text; use a UTF-8 value."),
    ("env", [1], "--env: expected a list of strings, not a list holding a whole number."),
    ("env", 5, "--env: expected a list of strings, not a whole number."),
    ("bind", "/a",
     "--bind: '/a' is not SRC:DST[:ro]; give a host path and a container path, "
     "e.g. /srv/data:/data:ro."),
    ("bind", "/a::/b",
     "--bind: '/a::/b' is not SRC:DST[:ro]; give a host path and a container path, "
     "e.g. /srv/data:/data:ro."),
    ("bind", "/a:/b:ro:x",
     "--bind: '/a:/b:ro:x' is not SRC:DST[:ro]; give a host path and a container path, "
     "e.g. /srv/data:/data:ro."),
    ("bind", "/a:/b:",
     "--bind: '/a:/b:' is not SRC:DST[:ro]; give a host path and a container path, "
     "e.g. /srv/data:/data:ro."),
    ("bind", "data:/data",
     "--bind: the source in 'data:/data' is not an absolute path; give both paths starting "
     "with '/', e.g. /srv/data:/data."),
    ("bind", "/data:data",
     "--bind: the destination in '/data:data' is not an absolute path; give both paths "
     "starting with '/', e.g. /srv/data:/data."),
    ("bind", "/srv:/",
     "--bind: '/srv:/' would cover the container's root; choose a folder such as /mnt/host."),
    ("bind", "/srv:/mnt/..:ro",
     "--bind: '/srv:/mnt/..:ro' would cover the container's root; choose a folder such as "
     "/mnt/host."),
    ("bind", "/a:/b:rx", "--bind: unknown mode 'rx' in '/a:/b:rx'; use ro or rw (the default)."),
    ("hostname", "under_score",
     "--hostname: 'under_score' is not a valid hostname; use letters, digits and '-' in "
     "dot-separated labels of 1 to 63 characters, 64 characters in all."),
    ("hostname", "-lead",
     "--hostname: '-lead' is not a valid hostname; use letters, digits and '-' in "
     "dot-separated labels of 1 to 63 characters, 64 characters in all."),
    ("hostname", "a..b",
     "--hostname: 'a..b' is not a valid hostname; use letters, digits and '-' in "
     "dot-separated labels of 1 to 63 characters, 64 characters in all."),
    ("hostname", "a" * 64,
     f"--hostname: '{'a' * 64}' is not a valid hostname; use letters, digits and '-' in "
     "dot-separated labels of 1 to 63 characters, 64 characters in all."),
    ("hostname", "a.b" * 22,
     f"--hostname: '{'a.b' * 22}' is not a valid hostname; use letters, digits and '-' in "
     "dot-separated labels of 1 to 63 characters, 64 characters in all."),
    ("net", "bridge", "--net: unknown network mode 'bridge'; use host or none."),
    ("read_only", "maybe",
     "--read-only: 'maybe' is not true or false; use true, false, yes or no."),
    ("read_only", 1, "--read-only: '1' is not true or false; use true, false, yes or no."),
    ("cap_add", "FLY",
     "--cap-add: unknown capability 'FLY'; 'man 7 capabilities' lists the names "
     "(e.g. NET_ADMIN or CAP_NET_ADMIN), or use ALL."),
    ("cap_drop", "41",
     "--cap-drop: unknown capability '41'; 'man 7 capabilities' lists the names "
     "(e.g. NET_ADMIN or CAP_NET_ADMIN), or use ALL."),
    ("seccomp", "",
     "--seccomp: '' is not a profile; use default, off, or the path of a seccomp profile "
     "file (JSON)."),
    ("seccomp", "/etc/",
     "--seccomp: '/etc/' is not a profile; use default, off, or the path of a seccomp "
     "profile file (JSON)."),
    ("deny_syscall", "mount(2)",
     "--deny-syscall: 'mount(2)' is not a system call name; use names like mount or ptrace "
     "(letters, digits and '_')."),
    ("deny_syscall", "",
     "--deny-syscall: '' is not a system call name; use names like mount or ptrace "
     "(letters, digits and '_')."),
    ("arch", "mips",
     "--arch: unknown architecture 'mips'; use one of amd64, arm64, armhf, armel, i386, "
     "riscv64, ppc64el, s390x, loong64."),
    ("memory", "0",
     "--memory: '0' is not a size above zero; give a number of bytes with an optional k, m, "
     "g or t suffix, e.g. 512m or 2g."),
    ("memory", "12x",
     "--memory: '12x' is not a size above zero; give a number of bytes with an optional k, "
     "m, g or t suffix, e.g. 512m or 2g."),
    ("memory", "-5m",
     "--memory: '-5m' is not a size above zero; give a number of bytes with an optional k, "
     "m, g or t suffix, e.g. 512m or 2g."),
    ("memory", -1,
     "--memory: -1 is not a size above zero; give a number of bytes with an optional k, m, "
     "g or t suffix, e.g. 512m or 2g."),
    ("memory", True, "--memory: expected a size (a number of bytes, or a string like "
     "\"512m\"), not true/false."),
    ("cpus", "0",
     "--cpus: '0' is not a number of CPUs; give a number above 0 and at most 1024."),
    ("cpus", "1025",
     "--cpus: '1025' is not a number of CPUs; give a number above 0 and at most 1024."),
    ("cpus", "nan",
     "--cpus: 'nan' is not a number of CPUs; give a number above 0 and at most 1024."),
    ("cpus", "two",
     "--cpus: 'two' is not a number of CPUs; give a number above 0 and at most 1024."),
    ("pids_limit", "0", "--pids-limit: '0' is not a whole number above 0; e.g. 1024."),
    ("pids_limit", "1.5", "--pids-limit: '1.5' is not a whole number above 0; e.g. 1024."),
    ("pids_limit", -3, "--pids-limit: -3 is not a whole number above 0; e.g. 1024."),
    ("command", ["/bin/sh", 3], "command: expected a list of strings, not a list holding a "
     "whole number."),
    ("entrypoint", ["/init\0"], "entrypoint: '/init\\x00' contains a NUL character; remove it."),
    ("backend", None, "--backend: a value is needed; give one of auto, rootless, privileged, "
     "proot."),
]  # fmt: skip


@pytest.mark.parametrize("key, value, message", MESSAGES)
def test_every_validation_message(key, value, message):
    assert error_of(key, value) == message


def test_long_values_are_cut_short_in_messages():
    assert error_of("workdir", "x" * 100) == (
        f"--workdir: '{'x' * 72}...' is not an absolute path; give a folder inside the "
        "container starting with '/'."
    )


def test_where_names_the_place_of_the_value():
    with pytest.raises(RuripyError) as e:
        options.BY_KEY["net"].check("wifi", "/x/profile.toml: net")
    assert str(e.value) == "/x/profile.toml: net: unknown network mode 'wifi'; use host or none."


def test_unknown_key_names_the_close_match():
    with pytest.raises(RuripyError) as e:
        options.check_value("readonly", True)
    assert str(e.value) == (
        "unknown key 'readonly' (did you mean 'read_only'?); keys are the long runtime option "
        "names with '_' for '-', e.g. cap_add or read_only."
    )
    with pytest.raises(RuripyError) as e:
        options.check_value("zzz", True)
    assert str(e.value) == (
        "unknown key 'zzz'; keys are the long runtime option names with '_' for '-', "
        "e.g. cap_add or read_only."
    )
    # The flag spelling is accepted for a key.
    assert options.check_value("--cap-add", "kill") == ["KILL"]
    assert options.check_value("pids-limit", "5") == 5


# -- config --set ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("read_only=true", ("read_only", True)),
        ("read-only=no", ("read_only", False)),
        ("no_new_privs=0", ("no_new_privs", False)),
        ("tty=1", ("tty", True)),
        ("cap_add=NET_ADMIN, sys_ptrace", ("cap_add", ["NET_ADMIN", "SYS_PTRACE"])),
        ("cap_drop=", ("cap_drop", [])),
        ("env=A=1,2,B=3", ("env", ["A=1,2", "B=3"])),
        ("env=PATH=/bin:/usr/bin", ("env", ["PATH=/bin:/usr/bin"])),
        ("bind=/a:/b,/c:/d:ro", ("bind", ["/a:/b", "/c:/d:ro"])),
        ("command=/bin/sh -c 'echo a, b'", ("command", ["/bin/sh", "-c", "echo a, b"])),
        ("entrypoint=", ("entrypoint", [])),
        ("memory=2g", ("memory", 2 << 30)),
        ("cpus=0.5", ("cpus", 0.5)),
        ("pids_limit=64", ("pids_limit", 64)),
        ("hostname=box", ("hostname", "box")),
        ("arch=aarch64", ("arch", "arm64")),
        ("user=nobody:nogroup", ("user", "nobody:nogroup")),
        ("deny_syscall=mount,umount2", ("deny_syscall", ["mount", "umount2"])),
    ],
)
def test_parse_assignment(text, expected):
    assert options.parse_assignment(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("read_only", "'read_only' is not KEY=VALUE; write it like read_only=true or "
         "cap_add=NET_ADMIN."),
        ("=true", "'=true' is not KEY=VALUE; write it like read_only=true or cap_add=NET_ADMIN."),
        ("readonly=true", "unknown key 'readonly' (did you mean 'read_only'?); keys are the "
         "long runtime option names with '_' for '-', e.g. cap_add or read_only."),
        ("read_only=maybe", "read_only: 'maybe' is not true or false; use true, false, yes "
         "or no."),
        ("cap_add=NET_ADMIN,FLY", "cap_add: unknown capability 'FLY'; 'man 7 capabilities' "
         "lists the names (e.g. NET_ADMIN or CAP_NET_ADMIN), or use ALL."),
        ("command=sh -c 'unclosed", "command: cannot split \"sh -c 'unclosed\" (No closing "
         "quotation); check the quotes."),
        ("memory=", "memory: '' is not a size above zero; give a number of bytes with an "
         "optional k, m, g or t suffix, e.g. 512m or 2g."),
        ("env=novalue", "env: 'novalue' is not KEY=VALUE; write it as novalue=value."),
    ],
)  # fmt: skip
def test_parse_assignment_errors(text, message):
    with pytest.raises(RuripyError) as e:
        options.parse_assignment(text)
    assert str(e.value) == message


# -- merge -----------------------------------------------------------------------------------


def test_merge_for_one_run():
    base = options.defaults()
    base.update(
        user="alice",
        env=["A=1", "B=2"],
        bind=["/a:/a"],
        cap_add=["NET_ADMIN"],
        cap_drop=["KILL"],
        deny_syscall=["mount"],
        command=["/bin/sh"],
        memory=1 << 30,
    )
    before = {k: (list(v) if isinstance(v, list) else v) for k, v in base.items()}
    got = options.merge(
        base,
        {
            "user": "bob",
            "workdir": None,  # not given
            "env": ["B=3", "C=4"],
            "bind": ["/b:/b:ro", "/a:/a"],
            "cap_add": ["SYS_PTRACE"],
            "cap_drop": ["MKNOD"],
            "deny_syscall": ["ptrace"],
            "command": ["/bin/echo", "hi"],
            "read_only": True,
        },
    )
    assert got == dict(
        before,
        user="bob",
        env=["A=1", "B=3", "C=4"],
        bind=["/a:/a", "/b:/b:ro"],
        cap_add=["NET_ADMIN", "SYS_PTRACE"],
        cap_drop=["KILL", "MKNOD"],
        deny_syscall=["mount", "ptrace"],
        command=["/bin/echo", "hi"],
        read_only=True,
    )
    assert base == before  # the profile itself is untouched
    got["cap_add"].append("X")
    assert base["cap_add"] == ["NET_ADMIN"]


def test_merge_refuses_unknown_keys():
    with pytest.raises(RuripyError) as e:
        options.merge(options.defaults(), {"mem": 5})
    assert str(e.value) == (
        "unknown key 'mem' (did you mean 'memory'?); keys are the long runtime option names "
        "with '_' for '-', e.g. cap_add or read_only."
    )
