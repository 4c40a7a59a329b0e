"""Rootless specifics: security.md 8.5 P0-R1..R5, as the unprivileged test users.

`ruripy-test` has a 65536-id range in /etc/subuid; `ruripy-nosub` has none and gets the
single-id map (tests/setup.sh makes both).
"""

import os
import pwd

import pytest
from conftest import Runner

from .conftest import parse_probe
from .test_mounts import check_sys_read_only, inside_mountinfo


def subid_start(path: str, user: str) -> int:
    with open(path) as f:
        for line in f:
            name, start, _ = line.strip().split(":")
            if name == user:
                return int(start)
    raise AssertionError(f"{user} has no range in {path}")


@pytest.fixture(scope="module")
def nosub_box(src_copy, make_box):
    """A container of ruripy-nosub (no /etc/subuid range: the single-id map)."""
    try:
        pw = pwd.getpwnam("ruripy-nosub")
    except KeyError:
        pytest.skip("user ruripy-nosub is missing: run tests/setup.sh as root")
    from .conftest import _rm, _tmpdir

    parent = _tmpdir("sec-home-nosub.", owner=pw)
    home = os.path.join(parent, "home")
    os.mkdir(home, 0o700)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    yield make_box(Runner(src_copy, home, pw), "box")
    _rm(parent)


# -- P0-R1 --------------------------------------------------------------------------------------


def test_P0_R1_setgroups_denied_for_a_single_id_map(nosub_box, rbox):
    r = nosub_box.run("sh", "-c", "cat /proc/self/setgroups; /bin/sec_probe setgroups")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "deny\nsetgroups EPERM\n"
    # With a subordinate range, newgidmap keeps setgroups allowed (apt and su need it).
    r = rbox.run("sh", "-c", "cat /proc/self/setgroups; /bin/sec_probe setgroups")
    assert r.stdout == "allow\nsetgroups ok\n"


# -- P0-R2 --------------------------------------------------------------------------------------


def test_P0_R2_maps_are_the_configured_ranges(rbox, nosub_box):
    user = rbox.runner.user
    uid_start = subid_start("/etc/subuid", user.pw_name)
    gid_start = subid_start("/etc/subgid", user.pw_name)
    for how in ("run", "exec"):
        if how == "exec":
            rbox.start()
        try:
            r = rbox.runner(how, "box", "cat", "/proc/self/uid_map", "/proc/self/gid_map")
        finally:
            if how == "exec":
                rbox.stop()
        rows = [line.split() for line in r.stdout.splitlines()]
        assert rows == [
            ["0", str(user.pw_uid), "1"],
            ["1", str(uid_start), "65536"],
            ["0", str(user.pw_gid), "1"],
            ["1", str(gid_start), "65536"],
        ], how
    # No range: one id only, and a warning naming the files, the user and the fix.
    nosub = nosub_box.runner.user
    r = nosub_box.run("cat", "/proc/self/uid_map", "/proc/self/gid_map")
    assert [line.split() for line in r.stdout.splitlines()] == [
        ["0", str(nosub.pw_uid), "1"],
        ["0", str(nosub.pw_gid), "1"],
    ]
    assert r.stderr == (
        f"ruripy: warning: no /etc/subuid and /etc/subgid range for uid {nosub.pw_uid}; "
        "only one id is mapped, so chown and package managers may fail (add one with "
        "'sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 "
        f"{nosub.pw_uid}').\n"
    )


# -- P0-R3 --------------------------------------------------------------------------------------

DEV_ALLOWED = {
    "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm",
    "stderr", "stdin", "stdout", "tty", "urandom", "zero",
}  # fmt: skip


def test_P0_R3_dev_holds_only_the_allow_list(rbox):
    sentinel = f"/dev/shm/ruripy-sentinel-{os.getpid()}"
    with open(sentinel, "w") as f:
        f.write("host shared memory")
    try:
        r = rbox.run("sh", "-c", "ls -A /dev; echo --; ls -A /dev/shm; echo --; ls -A /dev/pts")
    finally:
        os.unlink(sentinel)
    assert r.returncode == 0, r.stderr
    dev, shm, pts = (part.split() for part in r.stdout.split("--\n"))
    want = DEV_ALLOWED if os.path.exists("/dev/tty") else DEV_ALLOWED - {"tty"}
    assert set(dev) == want
    assert shm == []  # the host's /dev/shm is not visible
    assert pts == ["ptmx"]  # a new devpts instance: none of the host's terminals
    mounts = {m["point"]: m for m in inside_mountinfo(rbox)}
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        if f"/dev/{name}" in want:
            m = mounts[f"/dev/{name}"]
            assert {"nosuid", "noexec"} <= m["opts"], m
            assert m["root"] == f"/{name}", m  # the host's node, bound: not a mknod
    assert mounts["/dev"]["fstype"] == "tmpfs" and "nosuid" in mounts["/dev"]["opts"]
    assert mounts["/dev/pts"]["fstype"] == "devpts"
    assert not [m for m in mounts.values() if m["root"] == "/" and m["point"] == "/dev"
                and m["fstype"] == "devtmpfs"]  # fmt: skip


# -- P0-R4 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seccomp", ["default", "off"])
def test_P0_R4_sys_bind_is_read_only_recursively(rbox, seccomp):
    check_sys_read_only(rbox, seccomp)
    # The host's /sys is bound with its submounts (cgroup, fuse, bpf, ...): all read-only.
    subs = [m for m in inside_mountinfo(rbox) if m["point"].startswith("/sys/")]
    assert subs and all("ro" in m["opts"] for m in subs)


# -- P0-R5 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seccomp", ["default", "off"])
def test_P0_R5_masks_cannot_be_undone(rbox, seccomp):
    mask = "/proc/kcore" if os.path.exists("/proc/kcore") else "/proc/keys"
    got = rbox.probe(
        f"umount:{mask}",
        "remount-rw:/proc/sys",
        "umount:/proc/sys",
        "umount:/sys/firmware",
        f"read:{mask}",
        opts=("--seccomp", seccomp),
    )
    assert got == {
        f"umount:{mask}": "EPERM",
        "remount-rw:/proc/sys": "EPERM",
        "umount:/proc/sys": "EPERM",
        "umount:/sys/firmware": "EPERM",
        f"read:{mask}": "bytes=0",
    }


def test_P0_R5_same_in_exec(rbox):
    rbox.start()
    try:
        r = rbox("exec", "--", "/bin/sec_probe", "umount:/proc/keys", "remount-rw:/proc/sys")
    finally:
        rbox.stop()
    assert parse_probe(r.stdout) == {"umount:/proc/keys": "EPERM", "remount-rw:/proc/sys": "EPERM"}
