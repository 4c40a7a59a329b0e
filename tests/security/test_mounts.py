"""Mounts and the filesystem view: security.md 8.2, P0-M1..P0-M12.

Every test drives the real CLI (run, start, stop) on a busybox rootfs holding a static probe
(/bin/sec_probe, see tests/probes/sec_probe.c) that prints the errno names the kernel gave.
Rootfs trees are changed by the test directly in the store, as root, the way a hostile
image or a hostile earlier run would have left them.
"""

import os
import shutil
import stat
import subprocess

import pytest

from .conftest import MODES, Box

# security.md 3.2: the default masks (Docker's list plus SELinux, debug and tracing, and the
# cgroup tree since ruripy uses no cgroup namespace), and 3.3: the read-only paths.
MASKED_FILES = (
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
)
MASKED_DIRS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/sys/fs/selinux",
    "/sys/kernel/debug",
    "/sys/kernel/tracing",
    "/sys/fs/cgroup",
)
WRITE_PROBES = (
    "/proc/sys/kernel/core_pattern",
    "/proc/sysrq-trigger",
    "/proc/sys/vm/drop_caches",
)
PROC_MAGIC, SYSFS_MAGIC, TMPFS_MAGIC = 0x9FA0, 0x62656572, 0x01021994


def host_masked() -> tuple[list[str], list[str]]:
    """The default masked paths that exist on this host: (files, folders)."""
    files = [p for p in MASKED_FILES if os.path.exists(p)]
    dirs = [p for p in MASKED_DIRS if os.path.isdir(p)]
    dirs += sorted(
        f"/sys/devices/system/cpu/{c}/thermal_throttle"
        for c in os.listdir("/sys/devices/system/cpu")
        if os.path.isdir(f"/sys/devices/system/cpu/{c}/thermal_throttle")
    )
    return files, dirs


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def mountinfo(text: str) -> list[dict]:
    """Parse /proc/PID/mountinfo lines."""
    out = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        out.append(
            {
                "id": f[0],
                "parent": f[1],
                "dev": f[2],
                "root": f[3],
                "point": f[4],
                "opts": set(f[5].split(",")),
                "fstype": r[0],
                "source": r[1] if len(r) > 1 else "",
                "super": set(r[2].split(",")) if len(r) > 2 else set(),
            }
        )
    return out


def inside_mountinfo(box: Box, *opts: str) -> list[dict]:
    r = box.run(*opts, "cat", "/proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    return mountinfo(r.stdout)


def host_points() -> set[str]:
    return {m["point"] for m in mountinfo(read("/proc/self/mountinfo").decode())}


def write_errno(box: Box) -> str:
    """What opening a read-only /proc file for writing answers in this mode."""
    return "EACCES" if box.rootless else "EROFS"


# -- P0-M1 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_P0_M1_special_dirs_must_be_folders(mode, scratch, workdir):
    box = scratch(mode)
    outside = os.path.join(workdir, "outside-dev")
    os.mkdir(outside)
    with open(os.path.join(outside, "ptmx"), "w") as f:
        f.write("marker")
    marker_stat = os.stat(os.path.join(outside, "ptmx"))
    bad = os.path.join(workdir, "bad")
    owner = os.stat(box.rootfs)
    variants = [
        ("proc", lambda p: os.symlink("/bad", p)),  # runc mounts.bats
        ("sys", lambda p: os.symlink(bad, p)),
        ("dev", lambda p: os.symlink(outside, p)),  # crun: a marker ptmx outside
        ("proc", lambda p: open(p, "w").close()),  # a regular file
    ]
    before = read("/proc/self/mountinfo")
    for i, (special, plant) in enumerate(variants):
        path = os.path.join(box.rootfs, special)
        shutil.rmtree(path)
        plant(path)
        try:
            cmd = ("start",) if i == 1 else ("run",)
            r = box(*cmd, *(("--", "true") if cmd == ("run",) else ()))
        finally:
            os.unlink(path)
            os.mkdir(path, 0o755)
            os.chown(path, owner.st_uid, owner.st_gid)
        assert r.returncode == 125, (special, r.stdout, r.stderr)
        assert r.stderr == (
            f"ruripy: the container's /{special} is not a folder (a symlink or a file); "
            "refusing to start, it could point outside the rootfs.\n"
        )
        assert not os.path.exists(box.runner.host_path("state", "scratch.rec"))
    assert os.listdir(outside) == ["ptmx"]
    st = os.stat(os.path.join(outside, "ptmx"))
    assert (st.st_mtime_ns, st.st_size, st.st_mode) == (
        marker_stat.st_mtime_ns,
        marker_stat.st_size,
        marker_stat.st_mode,
    )
    assert read(os.path.join(outside, "ptmx")) == b"marker"
    assert not os.path.lexists(bad) and not os.path.lexists("/bad")
    assert read("/proc/self/mountinfo") == before
    # Absent special folders are created (as real folders) and the container starts.
    os.rmdir(os.path.join(box.rootfs, "sys"))
    assert box.run("true").returncode == 0
    assert stat.S_ISDIR(os.lstat(os.path.join(box.rootfs, "sys")).st_mode)


# -- P0-M2 --------------------------------------------------------------------------------------


def test_P0_M2_proc_and_sys_are_verified(sbox):
    from ruripy.errors import RuripyError
    from ruripy.sandbox import mounts, syscalls

    # The verifier itself: a tmpfs folder is refused where procfs is expected, /proc passes.
    fd = os.open("/dev/shm", os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(RuripyError, match="/proc is not the filesystem ruripy mounted"):
            mounts._check_fs(fd, syscalls.PROC_SUPER_MAGIC, "/proc")
    finally:
        os.close(fd)
    fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY)
    try:
        mounts._check_fs(fd, syscalls.PROC_SUPER_MAGIC, "/proc")
        assert os.fstat(fd).st_ino == 1
    finally:
        os.close(fd)
    # Inside: what is mounted is what was asked for.
    got = sbox.probe("fstype:/proc", "fstype:/sys", "fstype:/dev")
    assert got == {
        "fstype:/proc": f"type={PROC_MAGIC:#x}",
        "fstype:/sys": f"type={SYSFS_MAGIC:#x}",
        "fstype:/dev": f"type={TMPFS_MAGIC:#x}",
    }
    r = sbox.run("stat", "-c", "%i", "/proc")
    assert r.stdout.strip() == "1"


# -- P0-M3 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seccomp", ["default", "off"])
def test_P0_M3_masked_paths_read_empty_and_stay(sbox, seccomp):
    files, dirs = host_masked()
    assert files and dirs  # /proc/keys, /sys/firmware exist on any Linux host
    checks = [f"read:{p}" for p in files] + [f"ls:{p}" for p in dirs]
    checks += [f"umount:{p}" for p in files + dirs]
    checks += [f"read:{p}" for p in files]  # still masked after the umount attempts
    got = sbox.probe(*checks, opts=("--seccomp", seccomp))
    for p in files:
        assert got[f"read:{p}"] == "bytes=0", p
        assert got[f"umount:{p}"] == "EPERM", p
    for p in dirs:
        assert got[f"ls:{p}"] == "entries=0", p
        assert got[f"umount:{p}"] == "EPERM", p
    if os.path.exists("/proc/kcore"):
        r = sbox.run("stat", "-c", "%s", "/proc/kcore")
        assert r.stdout.strip() == "0"


def test_P0_M3_unmask_removes_the_masks(sbox):
    """--unmask (ruri's -A) is the switch for this layer: the masks are gone."""
    files, dirs = host_masked()
    got = sbox.probe(*(f"read:{p}" for p in files if p != "/proc/kcore"), opts=("--unmask",))
    assert any(v != "bytes=0" for v in got.values()), got  # e.g. /proc/interrupts has data
    mounts = inside_mountinfo(sbox, "--unmask")
    assert [m for m in mounts if m["point"] in files + dirs and is_mask(m)] == []
    # ... while the default run has one mask per path.
    masked = {
        m["point"]
        for m in inside_mountinfo(sbox)
        if is_mask(m) and m["point"].startswith(("/proc/", "/sys/"))
    }
    assert masked == set(files + dirs)


def is_mask(m: dict) -> bool:
    """A mask mount: the host's /dev/null, or ruripy's read-only empty tmpfs."""
    return m["root"] == "/null" or (m["fstype"] == "tmpfs" and "size=4k" in m["super"])


# -- P0-M4 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["default", "seccomp-off", "unmask"])
def test_P0_M4_read_only_paths(sbox, layer):
    opts = {"default": (), "seccomp-off": ("--seccomp", "off"), "unmask": ("--unmask",)}[layer]
    core = read("/proc/sys/kernel/core_pattern")
    present = [p for p in WRITE_PROBES if os.path.exists(p)]
    got = sbox.probe(*(f"open:{p}:w" for p in present), opts=opts)
    assert got == {f"open:{p}:w": write_errno(sbox) for p in present}
    ro = {m["point"]: m for m in inside_mountinfo(sbox, *opts)}
    for p in ("/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"):
        if os.path.exists(p):
            assert "ro" in ro[p]["opts"], p
    assert read("/proc/sys/kernel/core_pattern") == core


# -- P0-M5 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["link", "file"])
@pytest.mark.parametrize("mode", MODES)
def test_P0_M5_masks_use_the_host_dev_null(scratch, mode, kind):
    box = scratch(mode)
    null = os.path.join(box.rootfs, "dev", "null")
    if kind == "link":
        os.symlink("/proc/sys/kernel/core_pattern", null)
    else:
        with open(null, "w") as f:
            f.write("SECRET-NOT-EMPTY\n")
    try:
        check_masks_with_planted_null(box)
    finally:
        os.unlink(null)


def check_masks_with_planted_null(box: Box) -> None:
    planted = os.lstat(os.path.join(box.rootfs, "dev", "null"))
    assert stat.S_ISLNK(planted.st_mode) or stat.S_ISREG(planted.st_mode)
    core = read("/proc/sys/kernel/core_pattern")
    files, _ = host_masked()
    got = box.probe(*(f"read:{p}" for p in files), "open:/proc/sys/kernel/core_pattern:w")
    assert got == {
        **{f"read:{p}": "bytes=0" for p in files},
        "open:/proc/sys/kernel/core_pattern:w": write_errno(box),
    }
    # Each file mask is the host's /dev/null (devtmpfs, 1:3), never the image's file.
    host_null = os.stat("/dev/null")
    r = box.run("stat", "-c", "%t:%T %F", "/dev/null", *files)
    assert r.stdout.splitlines() == ["1:3 character special file"] * (1 + len(files))
    for m in inside_mountinfo(box):
        if m["point"] in files:
            assert (m["root"], m["fstype"]) == ("/null", "devtmpfs"), m
    assert os.stat("/dev/null").st_rdev == host_null.st_rdev
    assert read("/proc/sys/kernel/core_pattern") == core


# -- P0-M6 --------------------------------------------------------------------------------------


def test_P0_M6_no_mount_leaks_to_the_host(sbox, workdir):
    """During and after a run, in a test mount namespace whose / is shared (the common
    systemd setup, where only a slave/private root stops propagation), nothing appears."""
    box = sbox
    os.makedirs(os.path.join(box.rootfs, "mnt", "x"), exist_ok=True)
    script = "mount -t tmpfs t /mnt/x && touch /mnt/x/inside && echo mounted && read x"
    argv = box.runner.argv(
        "run", box.name, "--cap-add", "SYS_ADMIN", "--seccomp", "off", "sh", "-c", script
    )
    p = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "shared", "--", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        line = p.stdout.readline()
        assert line == "mounted\n", line or p.stderr.read()
        during = mountinfo(read(f"/proc/{p.pid}/mountinfo").decode())
        host_during = host_points()
    finally:
        out, err = p.communicate("go\n", timeout=30)
    assert p.returncode == 0, err
    home = box.runner.home
    assert not [m for m in during if m["point"].startswith(home)], during
    assert "/mnt/x" not in {m["point"] for m in during}
    assert not [pt for pt in host_during if pt.startswith(home)]
    assert os.listdir(os.path.join(box.rootfs, "mnt", "x")) == []
    # A detached container: its mounts stay in its own namespace while it runs and after.
    box.start()
    try:
        assert not [pt for pt in host_points() if pt.startswith(home)]
    finally:
        box.stop()
    assert not [pt for pt in host_points() if pt.startswith(home)]


# -- P0-M7 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seccomp", ["default", "off"])
def test_P0_M7_pivot_root_hides_the_host_root(sbox, workdir, seccomp):
    sentinel = os.path.join(workdir, "host-sentinel")
    with open(sentinel, "w") as f:
        f.write("host")
    host_root = next(
        m for m in mountinfo(read("/proc/self/mountinfo").decode()) if m["point"] == "/"
    )
    mounts = inside_mountinfo(sbox, "--seccomp", seccomp)
    assert mounts[0]["point"] == "/" and mounts[0]["root"] != "/"
    # No mount of the host's root folder anywhere (the old root was detached).
    assert not [m for m in mounts if m["dev"] == host_root["dev"] and m["root"] == "/"]
    got = sbox.probe(
        f"open:{sentinel}:r",
        f"chroot-escape:{sentinel}",
        opts=("--seccomp", seccomp, "--workdir", "/tmp"),
    )
    assert got == {f"open:{sentinel}:r": "ENOENT", f"chroot-escape:{sentinel}": "ENOENT"}


# -- P0-M8 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["default", "seccomp-off", "unmask+seccomp-off"])
def test_P0_M8_no_fresh_unmasked_procfs(sbox, layer):
    opts = {
        "default": (),
        "seccomp-off": ("--seccomp", "off"),
        "unmask+seccomp-off": ("--seccomp", "off", "--unmask"),
    }[layer]
    got = sbox.probe("fresh-proc", opts=opts)["fresh-proc"]
    if layer == "default":
        assert got == "unshare=EPERM"  # the seccomp filter stops it first
    else:
        # Without the filter: a new user namespace is allowed, but the kernel refuses a
        # procfs while the container's /proc has anything mounted over it.
        assert got == "mount=EPERM"


# -- P0-M9 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seccomp", ["default", "off"])
def test_P0_M9_sys_is_read_only_recursively(sbox, seccomp):
    check_sys_read_only(sbox, seccomp)


def check_sys_read_only(box: Box, seccomp: str = "default") -> None:
    helper = "/sys/kernel/uevent_helper"
    got = box.probe(
        "mkdir:/sys/fs/cgroup/x",
        "mkdir:/sys/kernel/x",
        f"open:{helper}:w",
        opts=("--seccomp", seccomp),
    )
    assert got == {
        "mkdir:/sys/fs/cgroup/x": "EROFS",
        "mkdir:/sys/kernel/x": "EROFS",
        f"open:{helper}:w": "EROFS" if os.path.exists(helper) else "ENOENT",
    }
    sys_mounts = [m for m in inside_mountinfo(box) if m["point"].startswith("/sys")]
    assert sys_mounts and all("ro" in m["opts"] for m in sys_mounts), sys_mounts


# -- P0-M10 -------------------------------------------------------------------------------------


def test_P0_M10_no_binfmt_misc(sbox):
    reg = "/proc/sys/fs/binfmt_misc/register"
    got = sbox.probe(f"open:{reg}:w", f"ls:{os.path.dirname(reg)}")
    assert got[f"open:{reg}:w"] in ("ENOENT", "EROFS", "EACCES")
    assert got[f"ls:{os.path.dirname(reg)}"] in ("entries=0", "ENOENT")
    assert not [m for m in inside_mountinfo(sbox) if m["fstype"] == "binfmt_misc"]


# -- P0-M11 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_P0_M11_bind_destinations_resolve_inside(mode, scratch, workdir):
    hostdir = os.path.join(workdir, "host-target")
    os.mkdir(hostdir)
    os.chmod(hostdir, 0o777)
    src = os.path.join(workdir, "src")
    os.mkdir(src)
    with open(os.path.join(src, "marker"), "w") as f:
        f.write("bound")
    os.chmod(src, 0o755)
    os.chmod(os.path.join(src, "marker"), 0o644)

    box = scratch(mode)
    path = box.rootfs
    os.makedirs(os.path.join(path, "real", "conf"))
    os.symlink("/real/conf", os.path.join(path, "conf"))  # absolute, existing
    os.symlink("/nowhere/conf", os.path.join(path, "dangling"))  # absolute, dangling
    os.symlink("../" * 12 + hostdir.lstrip("/"), os.path.join(path, "up"))  # .. escape
    for n in ("real", "real/conf", "conf", "dangling", "up"):
        os.lchown(os.path.join(path, n), box.root_uid, box.root_uid)
    try:
        check_bind_destinations(box, src, hostdir)
    finally:
        for n in ("conf", "dangling", "up"):
            os.unlink(os.path.join(path, n))
        for n in ("real", "nowhere", "tmp/" + hostdir.split("/")[2]):
            shutil.rmtree(os.path.join(path, n), ignore_errors=True)


def check_bind_destinations(box: Box, src: str, hostdir: str) -> None:
    before = read("/proc/self/mountinfo")
    r = box.run(
        "-b",
        f"{src}:/conf/x",
        "-b",
        f"{src}:/dangling/x",
        "-b",
        f"{src}:/up/x:ro",
        "--",
        "sh",
        "-c",
        f"cat /real/conf/x/marker /nowhere/conf/x/marker {hostdir}/x/marker; echo; "
        "cat /proc/self/mountinfo",
    )
    assert r.returncode == 0, r.stderr
    first, _, rest = r.stdout.partition("\n")
    assert first == "boundboundbound"
    points = {m["point"]: m for m in mountinfo(rest)}
    assert {"/real/conf/x", "/nowhere/conf/x", f"{hostdir}/x"} <= set(points)
    assert "ro" in points[f"{hostdir}/x"]["opts"]
    # On the host: the targets were made inside the rootfs, nothing outside it.
    for inside in ("real/conf/x", "nowhere/conf/x", hostdir.lstrip("/") + "/x"):
        assert os.path.isdir(os.path.join(box.rootfs, inside)), inside
    assert os.listdir(hostdir) == []
    assert not os.path.lexists("/real/conf") and not os.path.lexists("/nowhere")
    assert sorted(os.listdir(src)) == ["marker"]
    assert read("/proc/self/mountinfo") == before


# -- P0-M12 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seccomp", ["default", "off"])
def test_P0_M12_rootfs_is_nodev(pbox, seccomp):
    node = os.path.join(pbox.rootfs, "tmp", "planted-zero")
    if not os.path.exists(node):
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 5))  # harmless: /dev/zero
    got = pbox.probe("open:/tmp/planted-zero:r", opts=("--seccomp", seccomp))
    assert got == {"open:/tmp/planted-zero:r": "EACCES"}
    root = inside_mountinfo(pbox)[0]
    assert root["point"] == "/" and "nodev" in root["opts"]


def test_P0_M12_planted_node_opens_on_the_host(pbox):
    """Control: the planted node is a working device outside the container."""
    node = os.path.join(pbox.rootfs, "tmp", "planted-zero")
    if not os.path.exists(node):
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 5))
    with open(node, "rb") as f:
        assert f.read(4) == b"\0\0\0\0"
