"""`ruripy pull` from LXC image servers and local tarballs, through the real CLI, as the
unprivileged test user and as root, against fake mirrors served from loopback."""

import json
import lzma
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

import pytest
from conftest import TEST_ROOT
from lxcmirror import OWNED_FILE, SETUID_FILE, MirrorServer, build_mirror, host_arch

ARCH = host_arch()


@pytest.fixture(scope="session")
def mirror_tree():
    os.makedirs(TEST_ROOT, exist_ok=True)
    d = tempfile.mkdtemp(prefix="lxcmirror.", dir=TEST_ROOT)
    os.chmod(d, 0o755)
    m = build_mirror(os.path.join(d, "tree"))
    subprocess.run(["chmod", "-R", "a+rX", d], check=True)
    yield m
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def server(mirror_tree):
    with MirrorServer(mirror_tree.root) as s:
        yield s


ROOTFS = ("debian", "bookworm")


def rootfs_path(mirror_tree) -> str:
    return mirror_tree.path_of(*ROOTFS)


def subid_base(user: str) -> int:
    with open("/etc/subuid") as f:
        for line in f:
            name, start, _ = line.strip().split(":")
            if name == user:
                return int(start)
    raise AssertionError(f"{user} has no /etc/subuid range")


def host_uid(runner, container_uid: int) -> int:
    """Where a container uid lands on the host: 0 is the caller, N>0 is subuid base + N - 1."""
    if not runner.rootless:
        return container_uid
    if container_uid == 0:
        return runner.user.pw_uid
    return subid_base(runner.user.pw_name) + container_uid - 1


def fails(r, *words: str) -> str:
    """Exit 125 with a one-line error (after any progress lines) that contains every word."""
    assert r.returncode == 125, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == "" and "Traceback" not in r.stderr, r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("ruripy: "), r.stderr
    for w in words:
        assert w in err, (w, err)
    return err


def images(runner) -> list[dict]:
    r = runner("images", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def assert_clean(runner, images_expected: int = 0) -> None:
    """No half-made image, no staging leftovers, no partial downloads."""
    imgs = runner.host_path("images")
    assert not os.path.isdir(imgs) or len(os.listdir(imgs)) == images_expected, os.listdir(imgs)
    tmp = runner.host_path("tmp")
    assert not os.path.isdir(tmp) or os.listdir(tmp) == [], os.listdir(tmp)


def image_rootfs(runner, name: str) -> str:
    (img,) = [i for i in images(runner) if i["name"] == name]
    return runner.host_path("images", img["id"], "rootfs")


def test_pull_catalog_image(runner, server, mirror_tree):
    r = runner("pull", "debian:12", "--mirror", server.url)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "debian:bookworm\n"
    (img,) = images(runner)
    build = mirror_tree.builds[("debian", "bookworm", ARCH, "default")]
    assert img["name"] == "debian:bookworm"
    assert img["kind"] == "lxc" and img["arch"] == ARCH
    assert img["distro"] == "debian" and img["release"] == "bookworm"
    assert img["sha256"] == build["sha256"] and img["digest"] == "sha256:" + build["sha256"]
    assert img["size"] == build["size"]
    assert img["url"] == f"{server.url}/{rootfs_path(mirror_tree)}"
    assert img["source"] == "lxc:debian/bookworm/default"
    assert img["created"].endswith("Z")
    root = image_rootfs(runner, "debian:bookworm")
    with open(f"{root}/etc/os-release") as f:
        assert f.read() == "ID=debian-bookworm\nNAME=debian-bookworm\n"
    # Owners map into the caller's subordinate range; setuid bits are kept.
    assert os.lstat(f"{root}/{OWNED_FILE}").st_uid == host_uid(runner, 1000)
    assert os.lstat(f"{root}/etc/passwd").st_uid == host_uid(runner, 0)
    assert os.lstat(f"{root}/{SETUID_FILE}").st_mode & 0o7777 == 0o4755
    assert os.readlink(f"{root}/etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert os.readlink(f"{root}/bin/sh") == "busybox"
    assert (
        os.stat(f"{root}/usr/bin/busybox-hardlink").st_ino == os.stat(f"{root}/bin/busybox").st_ino
    )
    # Not a terminal: one line per step, no bar.
    lines = r.stderr.splitlines()
    assert lines[0] == (
        f"Pulling debian:bookworm ({ARCH}, build 20240929_23:08) from {img['url']} "
        f"({build['size'] / 1000:.1f} KB)"
    )
    assert lines[-1].startswith("Pulled debian:bookworm: ") and "entries" in lines[-1]
    warnings = [line for line in lines if "warning" in line]
    if runner.rootless:
        assert not os.path.lexists(f"{root}/dev/null")
        assert len(warnings) == 1 and "skipped 1 device node" in warnings[0], r.stderr
    else:
        assert stat.S_ISCHR(os.lstat(f"{root}/dev/null").st_mode)
        assert warnings == []
    assert_clean(runner, 1)
    # The table shows it too.
    r = runner("images")
    assert r.returncode == 0
    header, row = r.stdout.splitlines()
    assert header.split() == ["NAME", "KIND", "ARCH", "SIZE", "CREATED", "DIGEST"]
    assert row.split()[:3] == ["debian:bookworm", "lxc", ARCH]
    assert row.split()[-1] == build["sha256"][:12]


def test_second_pull_downloads_nothing(privileged, server, mirror_tree):
    rel = rootfs_path(mirror_tree)
    assert privileged("pull", "debian:oldstable", "--mirror", server.url, "-q").returncode == 0
    r = privileged("pull", "debian:bookworm", "--mirror", server.url)
    assert r.returncode == 0, r.stderr
    assert len(server.gets(rel)) == 1
    assert "up to date" in r.stderr
    # Removed and pulled again: the archive comes from the cache.
    assert privileged("rmi", "debian:bookworm").returncode == 0
    assert images(privileged) == []
    r = privileged("pull", "lxc:debian/bookworm", "--mirror", server.url, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["name"] == "debian:bookworm" and info["downloaded"] == 0
    assert len(server.gets(rel)) == 1
    assert [i["name"] for i in images(privileged)] == ["debian:bookworm"]
    cache = privileged.host_path("cache", "blobs", "sha256")
    assert os.listdir(cache) == [
        mirror_tree.builds[("debian", "bookworm", ARCH, "default")]["sha256"]
    ]


def test_quiet_and_default_release(privileged, server):
    r = privileged("pull", "debian", "--mirror", server.url, "--quiet")
    assert r.returncode == 0
    assert r.stdout == "debian:trixie\n" and r.stderr == ""


def test_resume_after_dropped_connection(runner, server, mirror_tree):
    rel = rootfs_path(mirror_tree)
    server.drop_once.add(rel)
    r = runner("pull", "debian:bookworm", "--mirror", server.url, "--json")
    assert r.returncode == 0, r.stderr
    gets = server.gets(rel)
    ((_, offset),) = server.dropped
    assert len(gets) == 2 and "Range" not in gets[0]
    assert gets[1]["Range"] == f"bytes={offset}-"
    size = mirror_tree.builds[("debian", "bookworm", ARCH, "default")]["size"]
    assert json.loads(r.stdout)["downloaded"] == size  # the rest only, nothing twice
    root = image_rootfs(runner, "debian:bookworm")
    assert os.path.isfile(f"{root}/bin/busybox")
    assert_clean(runner, 1)


def test_range_ignoring_server(runner, mirror_tree):
    rel = rootfs_path(mirror_tree)
    with MirrorServer(mirror_tree.root, ranges=False) as s:
        s.drop_once.add(rel)
        r = runner("pull", "debian:bookworm", "--mirror", s.url, "-q")
        assert r.returncode == 0, r.stderr
        assert len(s.gets(rel)) == 2
    root = image_rootfs(runner, "debian:bookworm")
    with open(f"{root}/etc/os-release") as f:
        assert "debian-bookworm" in f.read()
    cache = runner.host_path("cache", "blobs", "sha256")
    assert os.listdir(cache) == [
        mirror_tree.builds[("debian", "bookworm", ARCH, "default")]["sha256"]
    ]
    assert_clean(runner, 1)


def test_mirror_with_path_prefix_from_environment(runner, mirror_tree):
    with MirrorServer(mirror_tree.root, prefix="lxc-images") as s:
        assert s.url.endswith("/lxc-images")
        r = runner("pull", "alpine:3.20", "-q", env={"RURIPY_LXC_MIRROR": s.url + "/"})
        assert r.returncode == 0, r.stderr
        assert len(s.gets(mirror_tree.path_of("alpine", "3.20"))) == 1
        url = s.url
    (img,) = images(runner)
    assert img["name"] == "alpine:3.20" and img["mirror"] == url


def test_csv_index_fallback(privileged, server, mirror_tree):
    server.status["streams/v1/index.json"] = 404
    r = privileged("pull", "lxc:alpine/3.20/cloud", "--mirror", server.url, "-q", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["name"] == "alpine:3.20/cloud" and info["index"] == "csv"
    assert info["variant"] == "cloud"
    assert info["sha256"] == mirror_tree.builds[("alpine", "3.20", ARCH, "cloud")]["sha256"]
    assert (
        len(server.gets(mirror_tree.path_of("alpine", "3.20", variant="cloud", name="SHA256SUMS")))
        == 1
    )


def test_other_architecture(privileged, server):
    other = "arm64" if ARCH != "arm64" else "amd64"
    r = privileged(
        "pull", "debian:bookworm", "--arch", other, "--mirror", server.url, "--json", "-q"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["arch"] == other
    r = privileged("pull", "debian:trixie", "--arch", other, "--mirror", server.url)
    fails(r, "debian has no release 'trixie' for", other, "available: bookworm")
    fails(
        privileged("pull", "debian", "--arch", "vax", "--mirror", server.url),
        "unknown architecture 'vax'",
    )


def test_pull_local_tarball(runner, mirror_tree, workdir):
    src = os.path.join(mirror_tree.root, rootfs_path(mirror_tree))
    path = os.path.join(workdir, "my-rootfs.tar.xz")
    shutil.copy(src, path)
    os.chmod(path, 0o644)
    r = runner("pull", path, "--json", "-q")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["name"] == "my-rootfs" and info["kind"] == "file"
    assert info["source"] == "file:" + path
    with open(src, "rb") as f:
        import hashlib

        assert info["sha256"] == hashlib.sha256(f.read()).hexdigest()
    # The same through file: and a gzip-compressed plain tar.
    plain = os.path.join(workdir, "plain.tar.gz")
    with open(src, "rb") as f:
        data = lzma.decompress(f.read())
    import gzip

    with open(plain, "wb") as f:
        f.write(gzip.compress(data, 1))
    os.chmod(plain, 0o644)
    r = runner("pull", f"file:{plain}", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "plain\n"
    root = image_rootfs(runner, "plain")
    assert os.lstat(f"{root}/{OWNED_FILE}").st_uid == host_uid(runner, 1000)
    assert_clean(runner, 2)


# -- bad input: exit 125, one line, nothing left behind ---------------------------------------


def test_unknown_distro_and_release(runner, server):
    err = fails(
        runner("pull", "debain", "--mirror", server.url), "unknown distro 'debain'", "debian"
    )
    assert err.startswith("ruripy: ")
    fails(
        runner("pull", "debian:bookwrom", "--mirror", server.url),
        "unknown release 'bookwrom'",
        "bookworm",
    )
    fails(runner("pull", "lxc:debian/hamm", "--mirror", server.url), "no release 'hamm'")
    fails(runner("pull", "lxc:gentoo/current", "--mirror", server.url), "no distro 'gentoo'")
    fails(runner("pull", "lxc:Debian", "--mirror", server.url), "lxc:DISTRO/RELEASE")
    fails(runner("pull", "debian:", "--mirror", server.url), "DISTRO:RELEASE")
    assert_clean(runner)


def test_release_only_on_server(privileged, server):
    # ubuntu has "noble" in the catalog; "3.20" of alpine is in the catalog as well, but a
    # release the catalog does not know is accepted when the server has it.
    r = privileged("pull", "alpine:3.20", "--mirror", server.url, "-q")
    assert r.returncode == 0, r.stderr
    fails(privileged("pull", "alpine:3.2", "--mirror", server.url), "unknown release '3.2'", "3.20")


def test_not_a_tarball(runner, workdir):
    path = os.path.join(workdir, "notes.tar.gz")
    with open(path, "w") as f:
        f.write("this is not an archive\n" * 100)
    os.chmod(path, 0o644)
    fails(runner("pull", path), "not a tar archive")
    fails(runner("pull", "file:" + workdir), "is a folder")
    fails(runner("pull", os.path.join(workdir, "missing.tar.xz")), "does not exist")
    assert_clean(runner)


def test_truncated_archive(runner, mirror_tree, workdir):
    src = os.path.join(mirror_tree.root, rootfs_path(mirror_tree))
    path = os.path.join(workdir, "cut.tar.xz")
    with open(src, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    os.chmod(path, 0o644)
    fails(runner("pull", path), "cut.tar.xz", "truncated or corrupt")
    assert_clean(runner)


def test_corrupt_download_names_the_file(runner, server, mirror_tree):
    rel = rootfs_path(mirror_tree)
    server.corrupt.add(rel)
    want = mirror_tree.builds[("debian", "bookworm", ARCH, "default")]["sha256"]
    fails(
        runner("pull", "debian:12", "--mirror", server.url),
        "rootfs.tar.xz",
        "sha256",
        want,
        "corrupt",
    )
    assert_clean(runner)
    cache = runner.host_path("cache", "blobs", "sha256")
    assert not os.path.isdir(cache) or os.listdir(cache) == []


@pytest.mark.parametrize("code", [404, 500])
def test_server_errors(runner, server, mirror_tree, code):
    rel = rootfs_path(mirror_tree)
    server.status[rel] = code
    fails(
        runner("pull", "debian:12", "--mirror", server.url), f"HTTP {code}", f"{server.url}/{rel}"
    )
    assert_clean(runner)


def test_server_down(runner):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    fails(runner("pull", "debian", "--mirror", url), "cannot download", url, "connection refused")
    fails(runner("pull", "debian", "--mirror", "ftp://example"), "invalid mirror URL")
    assert_clean(runner)


def test_not_an_image_server(privileged, workdir):
    with MirrorServer(workdir) as s:
        fails(privileged("pull", "debian", "--mirror", s.url), "is not an LXC image server")


# -- interruptions and concurrency -----------------------------------------------------------


def children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def test_kill_during_pull_then_resume(runner, server, mirror_tree):
    rel = rootfs_path(mirror_tree)
    server.delay = 0.1  # 64 KB per 0.1 s: the pull takes over a second
    p = runner.popen(
        "pull",
        "debian:12",
        "--mirror",
        server.url,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cache = runner.host_path("cache", "blobs", "sha256")
    part = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        parts = (
            [n for n in os.listdir(cache) if n.endswith(".part")] if os.path.isdir(cache) else []
        )
        if parts and os.path.getsize(os.path.join(cache, parts[0])) >= 200_000:
            part = os.path.join(cache, parts[0])
            break
        time.sleep(0.02)
    assert part, "the download never started"
    # Kill -9 the pull itself (runuser's child), then runuser; its helper dies with it.
    for child in children(p.pid):
        os.kill(child, signal.SIGKILL)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(0.3)
    have = os.path.getsize(part)
    assert images(runner) == []
    assert os.listdir(runner.host_path("images")) == []
    server.delay = 0
    server.clear()
    r = runner("pull", "debian:12", "--mirror", server.url, "-q")
    assert r.returncode == 0, r.stderr
    (get,) = server.gets(rel)
    assert get["Range"] == f"bytes={have}-"
    assert [i["name"] for i in images(runner)] == ["debian:bookworm"]
    assert_clean(runner, 1)
    assert not os.path.exists(part)


def test_two_concurrent_pulls(runner, server, mirror_tree):
    server.delay = 0.02
    procs = [
        runner.popen(
            "pull",
            "debian:12",
            "--mirror",
            server.url,
            "-q",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out == "debian:bookworm\n"
    assert len(server.gets(rootfs_path(mirror_tree))) == 1
    (img,) = images(runner)
    root = runner.host_path("images", img["id"], "rootfs")
    assert os.path.isfile(f"{root}/bin/busybox")
    assert os.lstat(f"{root}/{OWNED_FILE}").st_uid == host_uid(runner, 1000)
    assert_clean(runner, 1)


def test_stale_staging_is_removed(runner, server):
    assert runner("pull", "debian:12", "--mirror", server.url, "-q").returncode == 0
    tmp = runner.host_path("tmp")
    # A staging folder of a process that no longer exists, with subuid-owned files.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = os.path.join(tmp, f"image-debian_bookworm.{dead.pid}.0123abcd")
    img = runner.host_path("images", images(runner)[0]["id"])
    subprocess.run(["cp", "-a", img, stale], check=True)
    # And one that belongs to a live process: kept.
    live = os.path.join(tmp, f"image-x.{os.getpid()}.0123abcd")
    os.mkdir(live)
    if runner.rootless:
        os.chown(live, runner.user.pw_uid, runner.user.pw_gid)
    assert "images" not in runner("images").stdout.split("\n", 1)[1]
    r = runner("pull", "alpine:3.20", "--mirror", server.url, "-q")
    assert r.returncode == 0, r.stderr
    assert os.listdir(tmp) == [os.path.basename(live)]
    os.rmdir(live)


# -- images, rmi, replacement, search --------------------------------------------------------


def test_rmi_refuses_while_a_container_uses_it(runner, server):
    assert runner("pull", "debian:12", "--mirror", server.url, "-q").returncode == 0
    r = runner("create", "box", "debian:bookworm")
    assert r.returncode == 0, r.stderr
    r = runner("create", "box2", "debian:bookworm")
    assert r.returncode == 0, r.stderr
    fails(runner("rmi", "debian:bookworm"), "used by containers box, box2", "--force")
    assert len(images(runner)) == 1
    fails(runner("rmi", "nothing:here"), "no such image: nothing:here")
    r = runner("rmi", "debian:12", "--force")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "debian:bookworm\n"
    assert "box, box2" in r.stderr
    assert images(runner) == []
    assert_clean(runner)


def test_pull_with_name_creates_a_container(runner, server):
    r = runner("pull", "debian:12", "--name", "web", "--mirror", server.url, "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "web\n"
    r = runner("list", "--json")
    assert [c["name"] for c in json.loads(r.stdout)] == ["web"]
    fails(runner("pull", "debian:12", "--name", "web", "--mirror", server.url), "already exists")
    fails(
        runner("pull", "debian:12", "--name", "../x", "--mirror", server.url),
        "invalid container name",
    )


def test_new_build_replaces_image_but_keeps_one_in_use(privileged, workdir):
    tree = os.path.join(workdir, "tree")
    prod = ("debian", "bookworm", ARCH, "default")
    build_mirror(tree, [prod], serial="20240101_00:00")
    with MirrorServer(tree) as s:
        assert privileged("pull", "debian:12", "--mirror", s.url, "-q").returncode == 0
        first = images(privileged)[0]
        # A newer build: the image is replaced, nothing else stays.
        build_mirror(tree, [prod], serial="20240201_00:00")
        assert privileged("pull", "debian:12", "--mirror", s.url, "-q").returncode == 0
        (second,) = images(privileged)
        assert second["serial"] == "20240201_00:00" and second["id"] == first["id"]
        assert_clean(privileged, 1)
        # A container uses it; the next build is installed beside the old tree.
        assert privileged("create", "box", "debian:bookworm").returncode == 0
        build_mirror(tree, [prod], serial="20240301_00:00")
        assert privileged("pull", "debian:12", "--mirror", s.url, "-q").returncode == 0
        by_name = {i["name"]: i for i in images(privileged)}
        assert by_name["debian:bookworm"]["serial"] == "20240301_00:00"
        kept = by_name[f"debian:bookworm@{second['sha256'][:12]}"]
        assert kept["id"] == second["id"] and kept["serial"] == "20240201_00:00"
        assert os.path.isfile(
            privileged.host_path("images", kept["id"], "rootfs", "bin", "busybox")
        )
        fails(privileged("rmi", kept["name"]), "used by container box")


def test_search(runner, server):
    r = runner("search", "--mirror", server.url, "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert sorted(rows) == ["alpine", "debian", "ubuntu"]
    deb = rows["debian"]
    assert [x["name"] for x in deb["releases"]] == ["trixie", "bookworm"]
    assert deb["releases"][1]["aliases"] == ["12", "oldstable"] and deb["default"] == "trixie"
    assert deb["arch"] == ARCH and deb["description"]
    r = runner("search", "noble", "--mirror", server.url)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "RELEASES", "DESCRIPTION"]
    assert lines[1].startswith("ubuntu") and "noble*" in lines[1] and len(lines) == 3
    other = "arm64" if ARCH != "arm64" else "amd64"
    r = runner("search", "--arch", other, "--mirror", server.url, "--json")
    assert [(x["name"], [y["name"] for y in x["releases"]]) for x in json.loads(r.stdout)] == [
        ("debian", ["bookworm"])
    ]
    fails(runner("search", "zzz", "--mirror", server.url), "nothing matches")
