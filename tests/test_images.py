"""The pieces behind `pull`: catalog, LXC index parsing, architectures, IMAGE forms, the
image store (find, list) and tree removal."""

import json
import os
import subprocess
import time
import tomllib

import pytest
from lxcmirror import MirrorServer, build_mirror, host_arch

from ruripy.errors import RuripyError
from ruripy.images import catalog, install, lxc, pull
from ruripy.store import Store, write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRED = [
    "debian", "ubuntu", "alpine", "archlinux", "fedora", "opensuse", "voidlinux", "kali",
    "rockylinux", "almalinux",
]  # fmt: skip


# -- catalog ----------------------------------------------------------------------------------


def test_catalog_has_every_required_distro():
    cat = catalog.load()
    for name in REQUIRED:
        e = cat[name]
        assert e.description and e.lxc_distro and e.variant == "default"
        assert e.release(e.default) is not None
        assert e.path.endswith(f"{name}.toml")


def test_catalog_files_are_small_and_well_formed():
    folder = os.path.join(REPO, "rootfs-images")
    assert os.path.realpath(os.path.join(REPO, "ruripy", "catalog")) == os.path.realpath(folder)
    for n in os.listdir(folder):
        assert n.endswith(".toml"), n
        with open(os.path.join(folder, n), "rb") as f:
            doc = tomllib.load(f)
        assert doc["name"] == n[:-5]
        assert set(doc) <= {"name", "description", "default", "lxc", "releases"}
        words = []
        for r, body in doc["releases"].items():
            words.append(r.lower())
            words += [a.lower() for a in body["aliases"]]
        assert len(words) == len(set(words)), f"{n}: an alias is used twice"
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        assert "catalog/*.toml" in tomllib.load(f)["tool"]["setuptools"]["package-data"]["ruripy"]


@pytest.mark.parametrize(
    "ref, release",
    [
        ("debian", "trixie"),
        ("debian:bookworm", "bookworm"),
        ("debian:12", "bookworm"),
        ("debian:oldstable", "bookworm"),
        ("debian:STABLE", "trixie"),
        ("ubuntu:24.04", "noble"),
        ("alpine", "3.22"),
        ("archlinux", "current"),
        ("opensuse:tw", "tumbleweed"),
        ("rockylinux:9", "9"),
    ],
)
def test_resolve(ref, release):
    e, r, name = catalog.resolve(ref)
    assert r is not None and r.name == release == name
    assert e.name == ref.split(":")[0]


def test_resolve_unknown():
    with pytest.raises(RuripyError) as e:
        catalog.resolve("debain")
    assert str(e.value).startswith("unknown distro 'debain'. Did you mean debian")
    with pytest.raises(RuripyError, match="Did you mean rockylinux?"):
        catalog.resolve("rocky:9")
    e, r, name = catalog.resolve("debian:bookwrom")
    assert r is None and name == "bookwrom"
    msg = str(catalog.unknown_release(e, "bookwrom"))
    assert msg.startswith("unknown release 'bookwrom' of debian. Did you mean bookworm?")
    assert "Known releases: trixie, bookworm" in msg
    for bad in ("debian:", ":12", "debian:../x"):
        with pytest.raises(RuripyError):
            catalog.resolve(bad)


def test_broken_catalog_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "foo.toml").write_text('name = "foo"\n[lxc]\ndistro = "foo"\n')
    monkeypatch.setattr(catalog, "catalog_dirs", lambda: [str(tmp_path / "catalog")])
    monkeypatch.setattr(catalog, "_CACHE", None)
    with pytest.raises(RuripyError, match=r"catalog file .*foo\.toml is invalid"):
        catalog.load()


# -- architectures and URLs -----------------------------------------------------------------


@pytest.mark.parametrize(
    "machine, arch",
    [
        ("x86_64", "amd64"),
        ("aarch64", "arm64"),
        ("armv7l", "armhf"),
        ("armv8l", "armhf"),
        ("armv6l", "armel"),
        ("i686", "i386"),
        ("riscv64", "riscv64"),
        ("ppc64le", "ppc64el"),
        ("s390x", "s390x"),
        ("loongarch64", "loong64"),
    ],
)
def test_arch_names(machine, arch, monkeypatch):
    assert lxc.normalize_arch(machine) == arch
    real = os.uname()
    fake = os.uname_result((real.sysname, real.nodename, real.release, real.version, machine))
    monkeypatch.setattr(os, "uname", lambda: fake)
    assert lxc.host_arch() == arch


def test_arch_override_and_unknown():
    assert lxc.normalize_arch("ARM64") == "arm64"
    assert lxc.normalize_arch(None) == host_arch()
    with pytest.raises(RuripyError, match="unknown architecture 'sparc'"):
        lxc.normalize_arch("sparc")


def test_base_url(monkeypatch):
    monkeypatch.delenv(lxc.MIRROR_ENV, raising=False)
    assert lxc.base_url() == "https://images.linuxcontainers.org"
    monkeypatch.setenv(lxc.MIRROR_ENV, "https://mirrors.example/lxc-images/")
    assert lxc.base_url() == "https://mirrors.example/lxc-images"
    assert lxc.base_url("http://127.0.0.1:8/x") == "http://127.0.0.1:8/x"
    with pytest.raises(RuripyError, match="invalid mirror URL"):
        lxc.base_url("mirrors.example")
    assert lxc.join("http://h/p", "/images/a/") == "http://h/p/images/a/"
    for bad in ("../etc/passwd", "images/../../x", "http://evil/x"):
        with pytest.raises(RuripyError, match="suspicious path"):
            lxc.join("http://h/p", bad)


# -- index parsing against a served tree ----------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("mirror") / "tree")
    a = host_arch()
    m = build_mirror(
        root,
        [("debian", "bookworm", a, "default"), ("mydebian", "bookworm", a, "default")],
    )
    return m


def test_csv_match_is_exact_field_by_field(tree):
    with MirrorServer(tree.root) as s:
        s.status["streams/v1/index.json"] = 404
        with open(os.path.join(tree.root, "meta/1.0/index-system")) as f:
            lines = f.read()
        assert lines.index("mydebian;") > lines.index("debian;")  # a substring search fails
        srv = lxc.Server(s.url)
        b = srv.find("debian", "bookworm", host_arch())
        assert b.index == "csv" and b.size is None
        assert b.url == f"{s.url}/{tree.path_of('debian', 'bookworm')}"
        assert b.sha256 == tree.builds[("debian", "bookworm", host_arch(), "default")]["sha256"]
        b2 = srv.find("mydebian", "bookworm", host_arch())
        assert b2.url.endswith(
            "/images/mydebian/bookworm/" + host_arch() + "/default/20240929_23:08/rootfs.tar.xz"
        )
        with pytest.raises(RuripyError, match="no distro 'ebian'. Close matches: debian"):
            srv.find("ebian", "bookworm", host_arch())


def test_simplestreams_newest_serial_and_ftype(tmp_path):
    a = host_arch()
    root = str(tmp_path / "tree")
    build_mirror(root, [("debian", "bookworm", a, "default")], serial="20240101_00:00")
    old = json.load(open(os.path.join(root, "streams/v1/images.json")))
    build_mirror(root, [("debian", "bookworm", a, "default")], serial="20240301_12:00")
    doc = json.load(open(os.path.join(root, "streams/v1/images.json")))
    prod = doc["products"][f"debian:bookworm:{a}:default"]
    prod["versions"].update(old["products"][f"debian:bookworm:{a}:default"]["versions"])
    # The item keys do not say what a file is: swap them, the ftype decides.
    items = prod["versions"]["20240301_12:00"]["items"]
    items["weird-key"] = items.pop("root.tar.xz")
    items["root.tar.xz"] = {
        "ftype": "squashfs",
        "path": "x.squashfs",
        "sha256": "0" * 64,
        "size": 1,
    }
    prod["versions"]["2023_bogus"] = {"items": {}}
    # A squashfs-only product.
    doc["products"][f"alpine:edge:{a}:default"] = {
        "versions": {
            "20240301_12:00": {
                "items": {
                    "root.squashfs": {
                        "ftype": "squashfs",
                        "path": "y",
                        "sha256": "1" * 64,
                        "size": 1,
                    }
                }
            }
        }
    }
    with open(os.path.join(root, "streams/v1/images.json"), "w") as f:
        json.dump(doc, f)
    with MirrorServer(root, prefix="lxc-images") as s:
        srv = lxc.Server(s.url)
        b = srv.find("debian", "bookworm", a)
        assert b.serial == "20240301_12:00" and b.index == "simplestreams"
        assert b.url == f"{s.url}/images/debian/bookworm/{a}/default/20240301_12:00/rootfs.tar.xz"
        assert b.size == items["weird-key"]["size"]
        products = {(p.distro, p.release): p for p in srv.products(a)}
        assert products[("debian", "bookworm")].serial == "20240301_12:00"
        assert ("alpine", "edge") not in products
        with pytest.raises(RuripyError, match="has no rootfs.tar.xz"):
            srv.find("alpine", "edge", a)
        with pytest.raises(RuripyError, match="has no variant 'cloud'"):
            srv.find("debian", "bookworm", a, "cloud")
        # Only two documents were read, once each.
        assert [p for m, p, h in s.requests] == [
            "/lxc-images/streams/v1/index.json",
            "/lxc-images/streams/v1/images.json",
        ]


# -- IMAGE forms -----------------------------------------------------------------------------


def test_image_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rootfs.tar.xz").write_bytes(b"x")
    assert pull.kind_of("debian") == "catalog"
    assert pull.kind_of("debian:12") == "catalog"
    assert pull.kind_of("lxc:debian/bookworm") == "lxc"
    assert pull.kind_of("docker://alpine") == "oci"
    assert pull.kind_of("file:x") == "file"
    assert pull.kind_of("./rootfs.tar.xz") == "file"
    assert pull.kind_of("rootfs.tar.xz") == "file"
    (tmp_path / "backup.img").write_bytes(b"x")
    (tmp_path / "debian").mkdir()
    assert pull.kind_of("backup.img") == "file"  # an existing file
    assert pull.kind_of("debian") == "catalog"  # a folder of that name does not count
    with pytest.raises(
        RuripyError,
        match="does not exist: no such file. For a registry image use docker://library/alpine",
    ):
        pull.kind_of("library/alpine")
    assert pull.image_name_for("debian") == "debian:trixie"
    assert pull.image_name_for("debian:12") == "debian:bookworm"
    assert pull.image_name_for("lxc:debian/bookworm") == "debian:bookworm"
    assert pull.image_name_for("lxc:alpine/3.20/cloud") == "alpine:3.20/cloud"
    assert pull.image_name_for("./rootfs.tar.xz") == "rootfs"
    assert (
        pull.file_image_name("/x/alpine-minirootfs-3.20.0-x86_64.tar.gz")
        == "alpine-minirootfs-3.20.0-x86_64"
    )
    assert pull.file_image_name("/x/.tar") == "tar"
    assert pull.parse_lxc("lxc:debian/bookworm") == ("debian", "bookworm", "default")
    for bad in (
        "lxc:debian",
        "lxc:debian/",
        "lxc:/x",
        "lxc:debian/bookworm/cloud/x",
        "lxc:de bian/x",
    ):
        with pytest.raises(RuripyError, match="lxc:DISTRO/RELEASE"):
            pull.parse_lxc(bad)


# -- the store -------------------------------------------------------------------------------


def fake_image(store: Store, name: str, **meta) -> str:
    d = store.image_dir(name)
    os.makedirs(os.path.join(d, "rootfs"))
    write_json(os.path.join(d, "image.json"), dict(name=name, **meta))
    return os.path.basename(d)


def test_find_and_list_images(tmp_path):
    store = Store(str(tmp_path / "home")).ensure()
    i1 = fake_image(store, "debian:trixie", kind="lxc")
    i2 = fake_image(store, "debian:bookworm", kind="lxc")
    fake_image(store, "my-rootfs", kind="file")
    os.makedirs(store.path("images", "deadbeefdeadbeef", "rootfs"))  # no image.json: broken
    assert [m["name"] for m in install.list_images(store)] == [
        "debian:bookworm", "debian:trixie", "my-rootfs",
    ]  # fmt: skip
    assert install.find_image(store, "debian")[0] == i1  # the catalog's default release
    assert install.find_image(store, "debian:12")[0] == i2
    assert install.find_image(store, "lxc:debian/bookworm")[0] == i2
    assert install.find_image(store, i2[:6])[0] == i2
    assert install.find_image(store, "my-rootfs")[1]["kind"] == "file"
    with pytest.raises(RuripyError, match="no such image: nothing"):
        install.find_image(store, "nothing")


def test_remove_tree_stays_inside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    t = tmp_path / "tree"
    (t / "a" / "b").mkdir(parents=True)
    (t / "a" / "b" / "f").write_text("x")
    (t / "link-dir").symlink_to(outside)
    (t / "a" / "link-file").symlink_to(outside / "keep")
    (t / "locked").mkdir()
    (t / "locked" / "f").write_text("x")
    os.chmod(t / "locked", 0)
    os.mkfifo(t / "fifo")
    deep = t
    for _ in range(300):
        deep = deep / "d"
    deep.mkdir(parents=True)
    assert install.remove_tree(str(t)) > 300
    assert not os.path.lexists(t)
    assert (outside / "keep").read_text() == "keep"
    assert install.remove_tree(str(t)) == 0


def test_remove_tree_refuses_mount_points(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    t = tmp_path / "tree"
    (t / "mnt").mkdir(parents=True)
    (t / "file").write_text("x")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(t / "mnt")], check=True)
    try:
        (t / "mnt" / "precious").write_text("x")
        with pytest.raises(RuripyError, match=r"mounted inside it; unmount it first"):
            install.remove_tree(str(t))
        assert (t / "mnt" / "precious").exists() and (t / "file").exists()
    finally:
        subprocess.run(["umount", str(t / "mnt")], check=True)
    install.remove_tree(str(t))
    assert not t.exists()


def test_stale_staging_detection(tmp_path):
    store = Store(str(tmp_path / "home")).ensure()
    p = subprocess.Popen(["true"])
    p.wait()
    dead = store.path("tmp", f"image-x.{p.pid}.00aa11bb")
    os.makedirs(os.path.join(dead, "rootfs", "etc"))
    mine = store.staging_dir("image-y")
    other = store.path("tmp", "not-a-staging-folder")
    os.mkdir(other)
    assert install.stale_staging(store) == [dead]
    assert install.cleanup_stale(store) == 1
    assert sorted(os.listdir(store.path("tmp"))) == sorted(
        [os.path.basename(mine), "not-a-staging-folder"]
    )


def test_old_part_downloads_are_dropped(tmp_path):
    store = Store(str(tmp_path / "home")).ensure()
    old = store.blob_path("sha256:" + "a" * 64) + ".part"
    new = store.blob_path("sha256:" + "b" * 64) + ".part"
    for p in (old, new):
        with open(p, "wb") as f:
            f.write(b"x")
    week = time.time() - install.PART_MAX_AGE - 60
    os.utime(old, (week, week))
    install.cleanup_stale(store)
    assert not os.path.exists(old) and os.path.exists(new)


def test_release_known_only_to_the_server(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("runs the extraction as root in-process")
    a = host_arch()
    root = str(tmp_path / "tree")
    build_mirror(root, [("alpine", "3.99", a, "default")])
    store = Store(str(tmp_path / "home"))
    with MirrorServer(root) as s:
        info = pull.pull("alpine:3.99", store=store, mirror=s.url, quiet=True)
        assert info["name"] == "alpine:3.99" and info["catalog"] == "alpine"
        with pytest.raises(
            RuripyError, match="unknown release '3.98' of alpine. Did you mean 3.99"
        ):
            pull.pull("alpine:3.98", store=store, mirror=s.url, quiet=True)
    assert [m["name"] for m in install.list_images(store)] == ["alpine:3.99"]
