"""Foreign architectures: an arm64 busybox rootfs run through qemu-user-static.

As root through a host binfmt_misc entry with the F flag (registered by ruripy when the
host has none that works), rootless through a binfmt_misc instance of the container's own
user namespace (Linux 6.7+), and under proot with `-q`. binfmt_misc must never be
reachable from inside (security.md P0-M10). The arm64 busybox comes from Debian's
busybox-static:arm64 (tests/setup.sh puts it in /opt/ruripy-testdata).
"""

import glob
import os
import shutil
import subprocess
import tempfile

import pytest

from ruripy.sandbox import binfmt

DATA = "/opt/ruripy-testdata/busybox-arm64"
QEMU = "/usr/bin/qemu-aarch64-static"


def _arm64_busybox() -> str:
    if os.path.isfile(DATA):
        return DATA
    debs = sorted(glob.glob("/var/cache/apt/archives/busybox-static_*_arm64.deb"))
    if debs:
        d = tempfile.mkdtemp(prefix="bb-arm64.")
        subprocess.run(["dpkg-deb", "-x", debs[-1], d], check=True)
        return os.path.join(d, "bin", "busybox")
    pytest.skip("Debian's busybox-static:arm64 is not available: run tests/setup.sh")


def _need_binfmt() -> None:
    if not os.access(QEMU, os.X_OK):
        pytest.skip("qemu-user-static is not installed (apt-get install qemu-user-static)")
    with open("/proc/filesystems") as f:
        if "binfmt_misc" not in f.read():
            pytest.skip("this kernel has no binfmt_misc")


@pytest.fixture
def arm_rootfs(workdir, busybox_rootfs):
    """A busybox rootfs whose busybox is the arm64 one, owned by the test user."""
    import pwd

    bb = _arm64_busybox()
    path = os.path.join(workdir, "rootfs-arm64")
    busybox_rootfs(path)
    shutil.copy2(bb, os.path.join(path, "bin", "busybox"))
    try:
        pw = pwd.getpwnam("ruripy-test")
        subprocess.run(["chown", "-R", f"{pw.pw_uid}:{pw.pw_gid}", path], check=True)
    except KeyError:
        pass
    return path


@pytest.fixture
def abox(runner, arm_rootfs, workdir):
    """Container 'a64' from `pull --arch arm64` of a tarball of the arm64 rootfs."""
    _need_binfmt()
    tarball = os.path.join(workdir, "bb-arm64.tar")
    if not os.path.exists(tarball):
        subprocess.run(["tar", "-C", arm_rootfs, "-cf", tarball, "."], check=True)
        os.chmod(tarball, 0o644)
    r = runner("pull", "--quiet", "--arch", "arm64", tarball)
    assert r.returncode == 0, r.stderr
    r = runner("images", "--json")
    assert '"arm64"' in r.stdout, r.stdout
    r = runner("create", "a64", "bb-arm64")
    assert r.returncode == 0, r.stderr
    return runner


def test_pull_arch_then_run(abox):
    r = abox("run", "a64", "--", "sh", "-c", "uname -m; echo $0; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout == "aarch64\nsh\n"
    assert r.stderr == ""


def test_binfmt_misc_is_not_reachable_inside(abox):
    r = abox(
        "run", "a64", "--", "sh", "-c",
        "ls -A /proc/sys/fs/binfmt_misc; echo ':x:M::ab::/bin/sh:F' > "
        "/proc/sys/fs/binfmt_misc/register && echo WROTE; "
        "awk '$3 == \"binfmt_misc\"' /proc/mounts | wc -l",
    )  # fmt: skip
    assert "WROTE" not in r.stdout
    assert r.stdout.split() == ["0"]  # empty folder, nothing mounted
    assert "/proc/sys/fs/binfmt_misc/register" in r.stderr


def test_exec_into_a_running_foreign_container(abox):
    r = abox("start", "a64")
    assert r.returncode == 0, r.stderr
    try:
        r = abox("exec", "a64", "uname", "-m")
        assert (r.returncode, r.stdout) == (0, "aarch64\n"), r.stderr
    finally:
        assert abox("stop", "a64").returncode == 0


def _private_binfmt_of(pid: int) -> list[str] | None:
    """What pid 1 of a container holds open as a binfmt_misc folder (seen as root)."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            names = sorted(os.listdir(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if "register" in names and "status" in names:
            return names
    return None


def test_rootless_uses_its_own_binfmt_misc_instance(rootless, arm_rootfs):
    """No host setup: pid 1 holds a binfmt_misc of the container's user namespace with
    qemu registered in it (the host's entries, if any, are not what runs the binaries)."""
    import json

    _need_binfmt()
    if not binfmt.private_supported():
        pytest.skip("Linux 6.7+ gives a user namespace its own binfmt_misc")
    assert rootless("import", "imp", arm_rootfs).returncode == 0
    r = rootless("start", "imp")
    assert r.returncode == 0, r.stderr
    try:
        pid = [row["pid"] for row in json.loads(rootless("ps", "--json").stdout)][0]
        assert _private_binfmt_of(pid) == ["qemu-aarch64", "register", "status"]
        r = rootless("exec", "imp", "uname", "-m")
        assert (r.returncode, r.stdout) == (0, "aarch64\n"), r.stderr
    finally:
        assert rootless("stop", "imp").returncode == 0


def test_native_rootless_container_has_no_binfmt_instance(rootless, rootfs_dir):
    import json

    assert rootless("import", "nat", rootfs_dir).returncode == 0
    assert rootless("start", "nat").returncode == 0
    try:
        pid = [row["pid"] for row in json.loads(rootless("ps", "--json").stdout)][0]
        assert _private_binfmt_of(pid) is None
    finally:
        assert rootless("stop", "nat").returncode == 0


def test_proot_runs_it_through_qemu(runner, arm_rootfs):
    _need_binfmt()
    assert runner("import", "imp", arm_rootfs).returncode == 0
    r = runner("run", "--backend", "proot", "imp", "sh", "-c", "uname -m; exit 5")
    assert (r.returncode, r.stdout) == (5, "aarch64\n"), r.stderr


def test_the_arch_is_found_without_pull_arch(runner, arm_rootfs):
    """An imported folder has no recorded architecture: the ELF header tells."""
    _need_binfmt()
    assert runner("import", "imp", arm_rootfs).returncode == 0
    r = runner("run", "imp", "uname", "-m")
    assert (r.returncode, r.stdout) == (0, "aarch64\n"), r.stderr


def test_privileged_leaves_a_working_host_entry(privileged, arm_rootfs):
    _need_binfmt()
    assert privileged("import", "imp", arm_rootfs).returncode == 0
    assert privileged("run", "imp", "true").returncode == 0
    name, works = binfmt.host_entry("arm64")
    assert works, name
    with open(os.path.join(binfmt.HOST_MOUNT, name)) as f:
        text = f.read()
    assert "flags: " in text and "F" in text.split("flags: ")[1].split()[0]


# -- units -------------------------------------------------------------------------------


def test_elf_arch_of_real_binaries():
    with open("/bin/busybox", "rb") as f:
        assert binfmt.elf_arch(f.read(64)) == binfmt.host_arch()
    with open(_arm64_busybox(), "rb") as f:
        assert binfmt.elf_arch(f.read(64)) == "arm64"
    assert binfmt.elf_arch(b"#!/bin/sh\n" + b"\0" * 60) is None


def test_registration_line():
    line = binfmt.registration("arm64", "/usr/bin/qemu-aarch64-static")
    assert line == (
        ":qemu-aarch64:M:0:"
        "\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
        "\\x02\\x00\\xb7\\x00:"
        "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff"
        "\\xfe\\xff\\xff\\xff:/usr/bin/qemu-aarch64-static:POF"
    )


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\n"
            "offset 0\nmagic 7f454c460201010000000000000000000200b700\n"
            "mask ffffffffffffff00fffffffffffffffffeffffff\n",
            (True, True),
        ),
        (
            "enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: P\noffset 0\n"
            "magic 7f454c460201010000000000000000000200b700\n"
            "mask ffffffffffffff00fffffffffffffffffeffffff\n",
            (True, False),  # without F the interpreter is looked up inside the rootfs
        ),
        (
            "disabled\ninterpreter /x\nflags: F\noffset 0\n"
            "magic 7f454c460201010000000000000000000200b700\n",
            (True, False),
        ),
        (
            "enabled\ninterpreter /usr/bin/qemu-arm-static\nflags: F\noffset 0\n"
            "magic 7f454c4601010100000000000000000002002800\n",
            (False, False),
        ),
        ("enabled\ninterpreter /usr/bin/python3\nflags: \nextension .pyc\n", (False, False)),
    ],
)
def test_host_entry_matching(text, expected):
    assert binfmt._entry_matches(text, "arm64") == expected


def test_missing_qemu_says_what_to_install(monkeypatch):
    from ruripy.errors import RuripyError

    monkeypatch.setitem(binfmt.QEMU, "arm64", ("nosuch-cpu", "7f", "ff"))
    with pytest.raises(RuripyError) as e:
        binfmt.qemu_path("arm64")
    assert str(e.value) == (
        f"running a arm64 rootfs on this {binfmt.host_arch()} host needs qemu-user: install "
        "it ('sudo apt-get install qemu-user-static', or 'pkg install qemu-user-nosuch-cpu' "
        "on Termux)."
    )


def test_plan_per_backend(monkeypatch, arm_rootfs):
    _need_binfmt()
    assert binfmt.plan(None, arm_rootfs, "proot") == {"qemu": QEMU}
    rootless = binfmt.plan(None, arm_rootfs, "rootless")
    assert rootless["binfmt"].startswith(":qemu-aarch64:M:0:")
    assert rootless["binfmt_arch"] == "arm64"
    # before Linux 6.7: the host's entry, or a message saying what to do
    monkeypatch.setattr(binfmt, "private_supported", lambda: False)
    monkeypatch.setattr(binfmt, "host_entry", lambda arch: ("qemu-aarch64", True))
    assert binfmt.plan("arm64", arm_rootfs, "rootless") == {}
    monkeypatch.setattr(binfmt, "host_entry", lambda arch: (None, False))
    from ruripy.errors import RuripyError

    with pytest.raises(RuripyError, match="binfmt-support"):
        binfmt.plan("arm64", arm_rootfs, "rootless")
    # a native root needs nothing
    assert binfmt.plan(binfmt.host_arch(), arm_rootfs, "rootless") == {}


def test_rootfs_arch_reads_overlay_layers(tmp_path, arm_rootfs):
    upper = tmp_path / "upper"
    upper.mkdir()
    assert binfmt.rootfs_arch(str(upper)) is None
    assert binfmt.rootfs_arch([str(upper), arm_rootfs]) == "arm64"
    assert binfmt.rootfs_arch("/") == binfmt.host_arch()
