"""A full disk: every command that writes a lot into ruripy's storage (pull of an LXC image,
a tarball or a registry image; import of a tarball or a folder; create by copy; clone) and
export's output file fail with one line and exit status 125, and leave nothing behind. So
does a pull that runs out of inodes, or of a quota (EDQUOT, a btrfs quota group).

The disks are real: a tmpfs mounted for the test (owned by the test user for rootless
runs), holding the storage root in store/ and a ballast file beside it that fills the disk
up to a few MB. Deleting the ballast is "freeing some space": the same command then works.
"""

import gzip
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest
import registry
from conftest import TEST_ROOT, Runner, busybox_rootfs, kill_leftovers
from lxcmirror import MirrorServer, build_mirror, host_arch, rootfs_tar, xz

from ruripy.images import oci

MB = 1 << 20
DISK_SIZE = 40 * MB
BALLAST = "ballast"
RANDOM_FILES = {f"opt/data/random{i}": i for i in range(4)}  # 4 MB that do not compress
STORE_HINT = " (e.g. 'ruripy rmi IMAGE', 'ruripy rm NAME')"
# What a storage root holds when it is empty: these folders and its lock files.
SKELETON = {
    "images", "containers", "state", "locks", "tmp", "cache", "cache/blobs", "cache/blobs/sha256"
}  # fmt: skip


def random_data() -> dict[str, bytes]:
    return {name: os.urandom(MB) for name in RANDOM_FILES}


# -- disks --------------------------------------------------------------------------------


class Disk:
    """A tmpfs mounted in a mount namespace of its own, held open by a sleeping process:
    the host's mount table never shows it, so tests on other workers that compare the
    host's mounts are not disturbed. Commands see it at `path` (through `enter`); this
    process sees the same folder at `view` (/proc/PID/root)."""

    def __init__(self, holder: subprocess.Popen, path: str) -> None:
        self.holder = holder
        self.path = path
        self.view = f"/proc/{holder.pid}/root{path}"

    def enter(self, runner: Runner, home: str | None = None) -> Runner:
        """A runner like `runner` (storage root `home`) whose commands run in the disk's
        mount namespace."""
        return InDisk(runner.src, home or runner.home, runner.user, self.holder.pid)


class InDisk(Runner):
    def __init__(self, src: str, home: str, user, pid: int) -> None:
        super().__init__(src, home, user)
        self.pid = pid

    def argv(self, *args: str, env: dict | None = None) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-m", "--", *super().argv(*args, env=env)]

    def host_path(self, *parts: str) -> str:
        return f"/proc/{self.pid}/root" + os.path.join(self.home, *parts)


@pytest.fixture
def small_disk():
    """`small_disk(owner)`: a fresh tmpfs of DISK_SIZE (owned by `owner`, a pwd entry, or
    root) in a private mount namespace; gone with it after the test."""
    made: list[tuple[str, subprocess.Popen]] = []

    def make(owner=None) -> Disk:
        os.makedirs(TEST_ROOT, exist_ok=True)
        base = tempfile.mkdtemp(prefix="disk.", dir=TEST_ROOT)
        os.chmod(base, 0o755)
        mnt = os.path.join(base, "disk")
        os.mkdir(mnt)
        holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sleep", "infinity"]
        )
        made.append((base, holder))
        mine = os.stat("/proc/self/ns/mnt").st_ino
        for _ in range(500):  # until unshare has made the namespace and exec'd sleep
            try:
                if os.stat(f"/proc/{holder.pid}/ns/mnt").st_ino != mine:
                    break
            except OSError:
                pass
            time.sleep(0.01)
        opts = f"size={DISK_SIZE},mode=0700"
        if owner is not None:
            opts += f",uid={owner.pw_uid},gid={owner.pw_gid}"
        r = subprocess.run(
            ["nsenter", "-t", str(holder.pid), "-m", "--"]
            + ["mount", "-t", "tmpfs", "-o", opts, "ruripy-full-disk", mnt],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs in a mount namespace here: {r.stderr.strip()}")
        return Disk(holder, mnt)

    yield make
    for base, holder in made:
        holder.kill()
        holder.wait()
        subprocess.run(["rm", "-rf", "--one-file-system", base], check=False)


@pytest.fixture(params=["rootless", "privileged"])
def full(request, src_copy, small_disk):
    """A runner (as the test user, then as root) whose storage root is on a small disk;
    `disk` and `host_path()` are where this process sees them."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    user = request.getfixturevalue("test_user") if request.param == "rootless" else None
    disk = small_disk(user)
    runner = disk.enter(Runner(src_copy, "", user), os.path.join(disk.path, "store"))
    runner.disk = disk.view
    yield runner
    kill_leftovers(runner.home)


@pytest.fixture(params=["rootless", "privileged"])
def quota(request, src_copy, small_disk):
    """A runner (as the test user, then as root) whose storage root is a btrfs subvolume
    with a quota group limit of QUOTA bytes: writing past it is EDQUOT, not ENOSPC. The
    file system is a loop-mounted image in the disk's own mount namespace."""
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root")
    if not shutil.which("mkfs.btrfs"):
        pytest.skip("mkfs.btrfs is missing (apt-get install btrfs-progs)")
    user = request.getfixturevalue("test_user") if request.param == "rootless" else None
    disk = small_disk(None)
    image = os.path.join(os.path.dirname(disk.path), "btrfs.img")
    with open(image, "wb") as f:
        f.truncate(160 * MB)  # sparse; mkfs.btrfs wants about 115 MB at least
    sub = os.path.join(disk.path, "quota")
    steps = [
        ["mkfs.btrfs", "-q", "-f", image],
        ["mount", "-o", "loop", image, disk.path],
        ["btrfs", "quota", "enable", disk.path],
        ["btrfs", "subvolume", "create", sub],
        ["btrfs", "qgroup", "limit", str(QUOTA), sub],
    ]
    if user is not None:
        steps.append(["chown", f"{user.pw_uid}:{user.pw_gid}", sub])
    for argv in steps:
        in_ns = argv[0] != "mkfs.btrfs"
        cmd = ["nsenter", "-t", str(disk.holder.pid), "-m", "--", *argv] if in_ns else argv
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"no btrfs quota groups here ({' '.join(argv[:3])}: {r.stderr.strip()})")
    runner = disk.enter(Runner(src_copy, "", user), os.path.join(sub, "store"))
    runner.subvolume = sub
    yield runner
    kill_leftovers(runner.home)
    subprocess.run(["nsenter", "-t", str(disk.holder.pid), "-m", "--", "umount", disk.path])


QUOTA = 6 * MB


def fill(disk: str, leave: int) -> None:
    """Fill `disk` with a ballast file until only `leave` bytes are free."""
    st = os.statvfs(disk)
    left = st.f_bavail * st.f_frsize - leave
    assert left > 0, "the disk is already fuller than the test wants"
    block = bytes(MB)
    with open(os.path.join(disk, BALLAST), "ab") as f:
        while left > 0:
            left -= f.write(block[: min(MB, left)])


def free_space(disk: str) -> None:
    os.unlink(os.path.join(disk, BALLAST))


def set_inodes(runner, extra: int | None) -> None:
    """Let the disk hold `extra` more files and folders than it holds now (None: plenty).
    A tmpfs counts them (nr_inodes): running out is ENOSPC too, with bytes to spare."""
    if extra is None:
        total = 1 << 20
    else:
        st = os.statvfs(runner.disk)
        total = st.f_files - st.f_ffree + extra
    mnt = os.path.dirname(runner.home)
    r = subprocess.run(
        ["nsenter", "-t", str(runner.pid), "-m", "--"]
        + ["mount", "-o", f"remount,nr_inodes={total}", mnt],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


def contents(home: str) -> set[str]:
    """Every file and folder in a storage root but its empty skeleton and lock files."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(home):
        rel = os.path.relpath(dirpath, home)
        for n in dirnames + filenames:
            p = os.path.normpath(os.path.join(rel, n))
            if p in SKELETON or (p.startswith("locks/") and p.endswith(".lock")):
                continue
            found.add(p)
    return found


def fails_full(
    r, where: str, doing: str, store: bool = True, reason: str = "no space left on device"
) -> None:
    """Exit 125 and, after any progress lines, exactly one line saying the disk is full
    (or, with `reason`, that the quota is used up)."""
    assert r.returncode == 125, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == "" and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.rstrip("\n").split("\n")
    hint = STORE_HINT if store else ""
    assert lines[-1] == (
        f"ruripy: {reason} in {where} while {doing}; free some space{hint} and try again."
    ), r.stderr
    assert [line for line in lines if line.startswith("ruripy:")] == [lines[-1]], r.stderr


def listed(runner, what: str) -> list[str]:
    r = runner(what, "--json")
    assert r.returncode == 0, r.stderr
    return [i["name"] for i in json.loads(r.stdout)]


def assert_random_files(root: str, data: dict[str, bytes]) -> None:
    for name, content in data.items():
        with open(os.path.join(root, name), "rb") as f:
            assert f.read() == content, name


# -- images ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big():
    """A rootfs tarball (LXC style, busybox and 4 MB of random data) and its files."""
    data = random_data()
    return rootfs_tar("debian-bookworm", extra=data), data


@pytest.fixture(scope="module")
def big_xz(big):
    return xz(big[0])


@pytest.fixture
def big_tarball(workdir, big_xz):
    path = os.path.join(workdir, "bigroot.tar.xz")
    with open(path, "wb") as f:
        f.write(big_xz)
    os.chmod(path, 0o644)
    return path


@pytest.fixture
def big_folder(workdir, rootfs_dir):
    """A busybox rootfs folder with 4 MB of random data, owned by the test user."""
    data = random_data()
    st = os.stat(rootfs_dir)
    for name, content in data.items():
        path = os.path.join(rootfs_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
    subprocess.run(["chown", "-R", f"{st.st_uid}:{st.st_gid}", rootfs_dir], check=True)
    return rootfs_dir, data


# -- pulls ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_mirror(big_xz):
    os.makedirs(TEST_ROOT, exist_ok=True)
    d = tempfile.mkdtemp(prefix="lxcmirror-big.", dir=TEST_ROOT)
    os.chmod(d, 0o755)
    prod = ("debian", "bookworm", host_arch(), "default")
    m = build_mirror(os.path.join(d, "tree"), [prod], rootfs={prod: big_xz})
    subprocess.run(["chmod", "-R", "a+rX", d], check=True)
    with MirrorServer(m.root) as server:
        yield server
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("cached", [False, True], ids=["download", "cached"])
def test_pull_lxc(full, big_mirror, big, cached):
    """The download and the unpacking fill the disk together; or the archive is in the
    cache from an earlier pull and only unpacking it does (the cache keeps it)."""
    if cached:
        r = full("pull", "debian:bookworm", "--mirror", big_mirror.url, "-q")
        assert r.returncode == 0, r.stderr
        assert full("rmi", "debian:bookworm").returncode == 0
    before = contents(full.host_path())
    assert len(before) == (1 if cached else 0), before
    fill(full.disk, 2 * MB)
    r = full("pull", "debian:bookworm", "--mirror", big_mirror.url)
    fails_full(r, full.home, "pulling debian:bookworm")
    assert contents(full.host_path()) == before  # no staging folder, no image, no new download
    assert listed(full, "images") == []
    free_space(full.disk)
    r = full("pull", "debian:bookworm", "--mirror", big_mirror.url, "-q")
    assert r.returncode == 0, r.stderr
    assert listed(full, "images") == ["debian:bookworm"]
    (img,) = os.listdir(full.host_path("images"))
    assert_random_files(full.host_path("images", img, "rootfs"), big[1])


@pytest.mark.parametrize("extra", [0, 1, 40], ids=["no-file", "one-file", "some-files"])
def test_pull_lxc_out_of_inodes(full, big_mirror, big, extra):
    """No file can be made at all (not even the lock or the download's .part), exactly
    one, or a few: the download or the unpacking runs out of inodes, not of bytes."""
    assert listed(full, "images") == []  # the storage root's skeleton is made
    set_inodes(full, extra)
    r = full("pull", "debian:bookworm", "--mirror", big_mirror.url)
    fails_full(r, full.home, "pulling debian:bookworm")
    assert contents(full.host_path()) == set()
    set_inodes(full, None)
    assert listed(full, "images") == []
    r = full("pull", "debian:bookworm", "--mirror", big_mirror.url, "-q")
    assert r.returncode == 0, r.stderr
    (img,) = os.listdir(full.host_path("images"))
    assert_random_files(full.host_path("images", img, "rootfs"), big[1])


def test_pull_lxc_over_quota(quota, big_mirror, big):
    """A quota (EDQUOT) runs out while the 4 MB download and its unpacking fill it: one
    line that says so, nothing left; with the limit lifted the same pull works."""
    r = quota("pull", "debian:bookworm", "--mirror", big_mirror.url)
    fails_full(r, quota.home, "pulling debian:bookworm", reason="disk quota exceeded")
    assert contents(quota.host_path()) == set()
    assert listed(quota, "images") == []
    lift = ["btrfs", "qgroup", "limit", "none", quota.subvolume]
    subprocess.run(["nsenter", "-t", str(quota.pid), "-m", "--", *lift], check=True)
    r = quota("pull", "debian:bookworm", "--mirror", big_mirror.url, "-q")
    assert r.returncode == 0, r.stderr
    (img,) = os.listdir(quota.host_path("images"))
    assert_random_files(quota.host_path("images", img, "rootfs"), big[1])


def test_pull_tarball(full, big_tarball, big):
    fill(full.disk, 2 * MB)
    r = full("pull", big_tarball)
    fails_full(r, full.home, "pulling bigroot")
    assert contents(full.host_path()) == set()
    assert listed(full, "images") == []
    free_space(full.disk)
    r = full("pull", big_tarball, "-q")
    assert r.returncode == 0, r.stderr
    assert listed(full, "images") == ["bigroot"]


# -- containers -----------------------------------------------------------------------------


def test_import_tarball(full, big_tarball, big):
    fill(full.disk, 2 * MB)
    r = full("import", "box", big_tarball)
    fails_full(r, full.home, f"importing {big_tarball} as container box")
    assert contents(full.host_path()) == set()
    assert listed(full, "list") == []
    free_space(full.disk)
    r = full("import", "box", big_tarball)
    assert r.returncode == 0, r.stderr
    assert listed(full, "list") == ["box"]
    assert_random_files(full.host_path("containers", "box", "rootfs"), big[1])


def test_import_folder(full, big_folder):
    folder, data = big_folder
    fill(full.disk, 2 * MB)
    r = full("import", "box", folder)
    fails_full(r, full.home, f"importing {folder} as container box")
    assert contents(full.host_path()) == set()
    assert listed(full, "list") == []
    free_space(full.disk)
    r = full("import", "box", folder)
    assert r.returncode == 0, r.stderr
    assert_random_files(full.host_path("containers", "box", "rootfs"), data)


def test_create_by_copy(full, big_tarball, big):
    """Without overlay, create copies the image: the image stays, no container appears."""
    r = full("pull", big_tarball, "-q")
    assert r.returncode == 0, r.stderr
    before = contents(full.host_path())
    fill(full.disk, 2 * MB)
    copy = {"RURIPY_TEST_NO_OVERLAY": "1"}
    r = full("create", "box", "bigroot", env=copy)
    fails_full(r, full.home, "creating container box")
    assert contents(full.host_path()) == before
    assert listed(full, "list") == []
    assert listed(full, "images") == ["bigroot"]
    free_space(full.disk)
    r = full("create", "box", "bigroot", env=copy)
    assert r.returncode == 0, r.stderr
    assert_random_files(full.host_path("containers", "box", "rootfs"), big[1])


def test_clone(full, big_folder):
    folder, data = big_folder
    assert full("import", "box", folder).returncode == 0
    before = contents(full.host_path())
    fill(full.disk, 2 * MB)
    r = full("clone", "box", "copy")
    fails_full(r, full.home, "cloning container box as copy")
    assert contents(full.host_path()) == before
    assert listed(full, "list") == ["box"]
    free_space(full.disk)
    r = full("clone", "box", "copy")
    assert r.returncode == 0, r.stderr
    assert_random_files(full.host_path("containers", "copy", "rootfs"), data)


def test_export(runner, big_folder, small_disk):
    """The output file is on the full disk: no partial tarball stays there."""
    folder, _ = big_folder
    assert runner("import", "box", folder).returncode == 0
    disk = small_disk(runner.user)
    out, seen = disk.path, disk.view
    runner = disk.enter(runner)
    dest = os.path.join(out, "box.tar")
    fill(seen, 2 * MB)
    r = runner("export", "box", dest)
    fails_full(r, out, f"exporting container box to {dest}", store=False)
    assert os.listdir(seen) == [BALLAST]
    free_space(seen)
    r = runner("export", "box", dest)
    assert r.returncode == 0, r.stderr
    assert os.listdir(seen) == ["box.tar"]
    assert os.path.getsize(os.path.join(seen, "box.tar")) > 4 * MB


# -- registry images ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_oci():
    """A registry on loopback holding test/big:1: busybox, then 4 MB of random data."""
    if not os.access(registry.REGISTRY_BIN, os.X_OK):
        pytest.skip(f"{registry.REGISTRY_BIN} is missing (apt-get install docker-registry)")
    if os.geteuid() != 0:
        pytest.skip("the registry fixture runs as root")
    os.makedirs(TEST_ROOT, exist_ok=True)
    root = tempfile.mkdtemp(prefix="registry-big.", dir=TEST_ROOT)
    tree = busybox_rootfs(os.path.join(root, "rootfs"))
    base = os.path.join(root, "base.tar")
    subprocess.run(["tar", "-C", tree, "-cf", base, "."], check=True)
    with open(base, "rb") as f:
        lower = f.read()
    data = random_data()
    upper = registry.make_tar([("opt/", None), ("opt/data/", None), *data.items()])
    gz = "application/vnd.oci.image.layer.v1.tar+gzip"
    layers = [(gzip.compress(lower, 1), gz), (gzip.compress(upper, 1), gz)]
    reg = registry.RegistryProcess(os.path.join(root, "reg"), os.path.join(root, "storage"))
    try:
        registry.push_image(reg.url, "test/big", "1", layers)
        ref = f"{reg.host}/test/big:1"
        yield ref, sum(len(d) for d, _ in layers), data
    finally:
        reg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.registry
@pytest.mark.parametrize("where", ["download", "unpack"])
def test_pull_oci(full, big_oci, where):
    """A layer download fills the disk (2 MB left: the first layer fits, the second does
    not), or the layers all fit and unpacking them does not (1 MB to spare)."""
    ref, blobs, data = big_oci
    fill(full.disk, 2 * MB if where == "download" else blobs + MB)
    r = full("pull", f"docker://{ref}")
    fails_full(r, full.home, f"pulling {oci.parse_reference(ref)}")
    assert contents(full.host_path()) == set()  # the blobs this pull fetched went too
    assert listed(full, "images") == []
    free_space(full.disk)
    r = full("pull", f"docker://{ref}", "-q")
    assert r.returncode == 0, r.stderr
    (img,) = os.listdir(full.host_path("images"))
    assert_random_files(full.host_path("images", img, "rootfs"), data)
