"""Hostile archives against the extractor (security.md 8.1, P0-X1 ... P0-X10, P1-X12).

Each test builds its archive with tarfile, extracts it as root by calling the extractor,
and asserts the exact outcome: the error message, the sentinel folder beside the rootfs
unchanged (names, types, sizes, mtimes, link counts), the resulting file types. The in-root
tests run with openat2 and again with the user-space walk (USE_OPENAT2 = False).
"""

import gzip
import io
import os
import stat
import tarfile

import pytest

from ruripy.errors import RuripyError
from ruripy.images.extract import Trash, extract
from ruripy.sandbox import inroot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the extractor tests run as root")

T0 = 1_600_000_000


class Stream:
    """Read-only, no seek: like a download."""

    def __init__(self, data: bytes) -> None:
        self._b = io.BytesIO(data)
        self.name = "evil.tar"

    def read(self, n: int = -1) -> bytes:
        return self._b.read(n)


def m(name, kind="file", data=b"", mode=0o644, uid=0, gid=0, link="", dev=(0, 0), **extra):
    ti = tarfile.TarInfo(name)
    ti.type = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "sym": tarfile.SYMTYPE,
        "hard": tarfile.LNKTYPE,
        "chr": tarfile.CHRTYPE,
        "blk": tarfile.BLKTYPE,
        "fifo": tarfile.FIFOTYPE,
    }[kind]
    ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, T0
    ti.linkname = link
    ti.devmajor, ti.devminor = dev
    ti.size = len(data) if kind == "file" else 0
    ti.uname = extra.get("uname", "")
    ti.gname = extra.get("gname", "")
    ti.pax_headers = dict(extra.get("pax", {}))
    return ti, data


def tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def unpack(root, members, **kw) -> dict:
    blob = members if isinstance(members, bytes) else tar(members)
    kw.setdefault("rootless", False)
    return extract(Stream(blob), str(root), **kw)


def snapshot(path) -> list:
    """Names, types, sizes, mtimes and link counts of everything under `path`, and itself."""
    path = str(path)
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            s = os.lstat(p)
            out.append(
                (os.path.relpath(p, path), stat.S_IFMT(s.st_mode), s.st_size, s.st_mtime_ns)
                + (s.st_nlink,)
            )
    s = os.lstat(path)
    return [(".", s.st_mode, s.st_mtime_ns, s.st_nlink), *sorted(out)]


@pytest.fixture(params=["openat2", "walk"])
def env(request, tmp_path, monkeypatch):
    """root/ (the rootfs) and outside/ beside it: a victim file and an empty victim folder."""
    monkeypatch.setattr(inroot, "USE_OPENAT2", request.param == "openat2")
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victimdir").mkdir()
    (outside / "victimfile").write_text("host data\n")
    os.utime(outside / "victimfile", (T0, T0))
    os.utime(outside / "victimdir", (T0, T0))
    os.utime(outside, (T0, T0))
    before = snapshot(outside)

    class Env:
        pass

    e = Env()
    e.root, e.outside, e.tmp = root, outside, tmp_path

    def unchanged():
        assert snapshot(outside) == before
        assert (outside / "victimfile").read_text() == "host data\n"
        assert sorted(os.listdir(tmp_path)) == ["outside", "root"]

    e.unchanged = unchanged
    return e


def refused(env, members, message, **kw):
    with pytest.raises(RuripyError) as e:
        unpack(env.root, members, **kw)
    assert str(e.value) == message
    assert e.value.status == 125
    env.unchanged()


# --- P0-X1 / X2: names ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../sentinel", "a/../../sentinel", "../outside/victimfile"])
def test_P0_X1_dotdot_and_absolute_names(env, name):
    refused(
        env,
        [m("ok", data=b"1"), m(name, data=b"pwned")],
        f"evil.tar: member {name!r} leaves the root folder with '..'; refusing the archive.",
    )
    assert not (env.tmp / "sentinel").exists()


def test_P0_X1_dotdot_that_stays_inside_is_normalised(env):
    unpack(env.root, [m("a/b/../c", data=b"c"), m("./x/./y", data=b"y")])
    assert (env.root / "a/c").read_bytes() == b"c"
    assert (env.root / "x/y").read_bytes() == b"y"
    assert not (env.root / "a/b").exists()
    env.unchanged()


def test_P0_X2_absolute_names_land_inside(env):
    target = str(env.outside / "abs-sentinel")
    unpack(env.root, [m(target, data=b"abs"), m("//" + str(env.outside / "d") + "/", "dir")])
    assert (env.root / target.lstrip("/")).read_bytes() == b"abs"
    assert os.path.isdir(str(env.root) + str(env.outside) + "/d")
    assert not os.path.exists(target)
    env.unchanged()


# --- P0-X3: symlinks planted earlier ----------------------------------------------------


def test_P0_X3_symlink_planted_earlier(env):
    """`lnk -> <outside>/victimdir` (absolute) then `lnk/pwned`: lands inside the root."""
    victim = str(env.outside / "victimdir")
    unpack(env.root, [m("lnk", "sym", link=victim), m("lnk/pwned", data=b"x")])
    assert (env.root / victim.lstrip("/") / "pwned").read_bytes() == b"x"
    assert os.readlink(env.root / "lnk") == victim
    env.unchanged()


@pytest.mark.parametrize(
    "target",
    [
        "../outside/victimdir",
        "../../../../../../../../outside/victimdir",
        "/../../outside/victimdir",
        "a/../../outside/victimdir",
        "/proc/self/cwd",
        "/proc/self/root/{outside}/victimdir",
    ],
)
def test_P0_X3_relative_and_dotdot_links(env, target):
    target = target.format(outside=str(env.outside).lstrip("/"))
    unpack(env.root, [m("a/", "dir"), m("lnk", "sym", link=target), m("lnk/pwned", data=b"x")])
    files = [os.path.join(d, f) for d, _, fs in os.walk(env.root) for f in fs]
    found = [f for f in files if stat.S_ISREG(os.lstat(f).st_mode)]
    assert len(found) == 1 and found[0].endswith("/pwned")
    env.unchanged()


def test_P0_X3_symlink_planted_earlier_across_two_archives(env):
    victim = str(env.outside / "victimdir")
    unpack(env.root, [m("etc/", "dir"), m("etc/lnk", "sym", link=victim)])
    unpack(env.root, [m("etc/lnk/pwned", data=b"x"), m("etc/lnk/sub/deeper", data=b"y")])
    assert (env.root / victim.lstrip("/") / "pwned").read_bytes() == b"x"
    assert (env.root / victim.lstrip("/") / "sub/deeper").read_bytes() == b"y"
    # and as OCI layers, with a relative escape this time
    unpack(env.root, [m("rel", "sym", link="../../outside/victimdir")], whiteouts=True)
    unpack(env.root, [m("rel/pwned2", data=b"z")], whiteouts=True)
    assert (env.root / "outside/victimdir/pwned2").read_bytes() == b"z"
    env.unchanged()


def test_P0_X3_symlink_loop_is_refused(env):
    refused(
        env,
        [m("l1", "sym", link="l2"), m("l2", "sym", link="l1"), m("l1/x", data=b"x")],
        "evil.tar: member 'l1/x' has a parent that is not a folder "
        "(Too many levels of symbolic links); refusing the archive.",
    )


def test_P0_X3_parent_that_is_a_file(env):
    refused(
        env,
        [m("f", data=b"f"), m("f/x", data=b"x")],
        "evil.tar: member 'f/x' has a parent that is not a folder (Not a directory); "
        "refusing the archive.",
    )


# --- P0-X4 / X5: hard links ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "why"),
    [
        ("{outside}/victimfile", "which is missing (No such file or directory)"),
        ("lnk/victimfile", "which is missing (No such file or directory)"),
    ],
)
def test_P0_X4_hardlink_to_outside(env, link, why):
    link = link.format(outside=env.outside)
    members = [m("lnk", "sym", link=str(env.outside)), m("hl", "hard", link=link)]
    refused(
        env,
        members,
        f"evil.tar: member 'hl' is a hard link to {link!r}, {why}; refusing the archive.",
    )
    assert os.lstat(env.outside / "victimfile").st_nlink == 1


def test_P0_X4_hardlink_with_dotdot(env):
    refused(
        env,
        [m("hl", "hard", link="../../outside/victimfile")],
        "evil.tar: member 'hl' leaves the root folder with '..'; refusing the archive.",
    )
    assert os.lstat(env.outside / "victimfile").st_nlink == 1


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([m("d/", "dir")], "is a hard link to 'd', not a regular file"),
        ([m("f", data=b"f"), m("s", "sym", link="f")], "is a hard link to 's', not a regular file"),
        ([m("p", "fifo")], "is a hard link to 'p', not a regular file"),
        ([], "is a hard link to 'pre', a file this archive did not create"),
        ([m("dir/", "dir")], "is a hard link to 'dir/../pre', a file this archive did not create"),
    ],
)
def test_P0_X5_hardlink_targets(env, members, why):
    (env.root / "pre").write_text("already in the rootfs")
    target = why.split("'")[1]
    refused(
        env,
        [*members, m("hl", "hard", link=target)],
        f"evil.tar: member 'hl' {why}; refusing the archive.",
    )
    assert os.lstat(env.root / "pre").st_nlink == 1


def test_P0_X5_hardlink_to_a_file_of_an_earlier_archive(env):
    unpack(env.root, [m("usr/bin/busybox", data=b"elf")])
    refused(
        env,
        [m("bin/sh", "hard", link="usr/bin/busybox")],
        "evil.tar: member 'bin/sh' is a hard link to 'usr/bin/busybox', a file this archive "
        "did not create; refusing the archive.",
    )


def test_P0_X5_hardlink_to_a_file_of_a_lower_layer(env):
    """The layers of one image share the files they created: a later layer may link one
    of an earlier layer's files, never a file that was there before either."""
    (env.root / "pre").write_text("already in the rootfs")
    created: set = set()
    unpack(env.root, [m("usr/bin/busybox", data=b"elf")], created=created)
    unpack(env.root, [m("bin/sh", "hard", link="usr/bin/busybox", mode=0o755)], created=created)
    a, b = os.lstat(env.root / "usr/bin/busybox"), os.lstat(env.root / "bin/sh")
    assert (b.st_ino, b.st_nlink, b.st_mode & 0o7777) == (a.st_ino, 2, 0o755)
    with pytest.raises(RuripyError) as e:
        unpack(env.root, [m("hl", "hard", link="pre")], created=created)
    assert "a file this archive did not create" in str(e.value)
    assert os.lstat(env.root / "pre").st_nlink == 1


def test_P0_X5_hardlink_through_symlinked_parent_stays_inside(env):
    """A link target named through an in-root symlink is fine when this archive made it."""
    unpack(
        env.root,
        [
            m("usr/bin/busybox", data=b"elf"),
            m("bin", "sym", link="/usr/bin"),
            m("sh", "hard", link="bin/busybox"),
        ],
    )
    assert os.lstat(env.root / "sh").st_ino == os.lstat(env.root / "usr/bin/busybox").st_ino
    env.unchanged()


# --- P0-X6: existing links replaced -----------------------------------------------------


def test_P0_X6_existing_link_replaced(env):
    victim = str(env.outside / "victimfile")
    unpack(
        env.root,
        [
            m("etc/", "dir"),
            m("etc/passwd", "sym", link=victim),
            m("etc/passwd", data=b"root:x:0:0\n"),
        ],
    )
    assert stat.S_ISREG(os.lstat(env.root / "etc/passwd").st_mode)
    assert (env.root / "etc/passwd").read_bytes() == b"root:x:0:0\n"
    env.unchanged()


def test_P0_X6_symlink_from_an_earlier_archive_replaced(env):
    victim = str(env.outside / "victimfile")
    unpack(
        env.root,
        [
            m("etc/resolv.conf", "sym", link=victim),
            m("etc/x", "sym", link="../../outside/victimdir"),
        ],
    )
    unpack(
        env.root,
        [
            m("etc/resolv.conf", data=b"nameserver 1.1.1.1\n"),
            m("etc/x/", "dir"),
            m("etc/x/f", data=b"f"),
            m("etc/y", "sym", link="/etc/resolv.conf"),
            m("etc/y", "fifo"),
        ],
    )
    assert stat.S_ISREG(os.lstat(env.root / "etc/resolv.conf").st_mode)
    assert stat.S_ISDIR(os.lstat(env.root / "etc/x").st_mode)
    assert stat.S_ISFIFO(os.lstat(env.root / "etc/y").st_mode)
    env.unchanged()


def test_P0_X6_removals_through_the_trash_never_follow_links(env):
    """Whiteouts, opaque folders and replaced entries moved to a Trash and deleted there:
    links to host files and folders are removed themselves, never followed."""
    victim = str(env.outside / "victimfile")
    host = env.tmp / "host"  # a host folder with content, for links to point at
    (host / "sub").mkdir(parents=True)
    (host / "keep").write_text("k")
    (host / "sub" / "keep").write_text("k")
    lower = [
        m("abs", "sym", link=str(host)),
        m("rel", "sym", link="../host"),
        m("d/", "dir"),
        m("d/in", "sym", link=victim),
        m("d/up", "sym", link="../../host/sub"),
        m("d/sub/", "dir"),
        m("d/sub/f", data=b"f"),
        m("o/", "dir"),
        m("o/l", "sym", link=str(host)),
        m("o/s", "sym", link=str(host / "sub")),
        m("f", "sym", link=victim),
    ]
    upper = [
        m(".wh.abs", data=b""),
        m(".wh.rel", data=b""),
        m("d", data=b"now a file"),
        m("o/.wh..wh..opq", data=b""),
        m("f", data=b"replaced"),
        m(".wh.hl", data=b""),
    ]
    with Trash(f"{env.root}.trash") as trash:
        unpack(env.root, lower, whiteouts=True, trash=trash)
        os.link(env.outside / "victimfile", env.root / "hl")  # planted outside the tool
        unpack(env.root, upper, whiteouts=True, trash=trash)
    assert sorted(os.listdir(env.root)) == ["d", "f", "o"]
    assert (env.root / "d").read_bytes() == b"now a file"
    assert (env.root / "f").read_bytes() == b"replaced"
    assert os.listdir(env.root / "o") == []
    assert sorted(str(p.relative_to(host)) for p in host.rglob("*")) == ["keep", "sub", "sub/keep"]
    host.joinpath("sub", "keep").unlink()
    host.joinpath("sub").rmdir()
    host.joinpath("keep").unlink()
    host.rmdir()
    env.unchanged()  # also: the victim's link count is 1 again, and no trash folder is left


def test_P0_X6_hardlink_planted_in_rootfs_replaced(env):
    """A rootfs file hard-linked to a host file (planted outside the tool) is replaced."""
    (env.root / "etc").mkdir()
    os.link(env.outside / "victimfile", env.root / "etc/shadow")
    unpack(env.root, [m("etc/shadow", data=b"new", mode=0o600)])
    assert (env.outside / "victimfile").read_text() == "host data\n"
    assert os.lstat(env.outside / "victimfile").st_nlink == 1
    assert os.lstat(env.outside / "victimfile").st_mode & 0o777 == 0o644
    assert (env.root / "etc/shadow").read_bytes() == b"new"


# --- P0-X7: devices -----------------------------------------------------------------------


DEVICES = [
    m("root/sda", "blk", dev=(8, 0), mode=0o660),
    m("dev/mem", "chr", dev=(1, 1), mode=0o640),
    m("dev/null", "chr", dev=(1, 3), mode=0o666),
]


def test_P0_X7_device_nodes(env):
    stats = unpack(env.root, DEVICES)
    assert os.listdir(env.root / "dev") == ["null"]
    s = os.lstat(env.root / "dev/null")
    assert stat.S_ISCHR(s.st_mode) and s.st_rdev == os.makedev(1, 3)
    assert not (env.root / "root").exists()
    assert stats["skipped_devices"] == 2
    env.unchanged()


def test_P0_X7_device_nodes_rootless(env):
    stats = unpack(env.root, DEVICES, rootless=True)
    assert os.listdir(env.root) == []
    assert stats["skipped_devices"] == 3
    env.unchanged()


def test_P0_X7_device_through_symlinked_dev(env):
    """`dev -> <outside>` then `dev/null`: the node lands inside (or nowhere), never outside."""
    unpack(
        env.root,
        [m("dev", "sym", link=str(env.outside / "victimdir")), m("dev/null", "chr", dev=(1, 3))],
    )
    assert stat.S_ISCHR(os.lstat(str(env.root) + str(env.outside) + "/victimdir/null").st_mode)
    env.unchanged()


def test_P0_X7_rootless_import_warns_once(rootless, workdir):
    """Through the CLI, rootless: device nodes skipped with one warning, not fatal."""
    path = os.path.join(workdir, "devs.tar")
    with open(path, "wb") as f:
        f.write(tar([m("bin/", "dir"), m("etc/", "dir"), *DEVICES]))
    os.chmod(path, 0o644)
    r = rootless("import", "devbox", path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("skipped 3 device nodes") == 1, r.stderr
    rootfs = rootless.host_path("containers", "devbox", "rootfs")
    assert sorted(os.listdir(rootfs)) == ["bin", "etc"]


# --- P0-X9: budgets -----------------------------------------------------------------------


def zeros_tar_gz(size: int) -> bytes:
    """A gzip of a tar holding `size` zero bytes, made without compressing them all:
    gzip members may be concatenated (RFC 1952), so one compressed MiB is repeated."""
    header = tarfile.TarInfo("zeros")
    header.size = size
    mib = gzip.compress(bytes(1 << 20), compresslevel=9)
    assert size % (1 << 20) == 0
    end = bytes(1024)
    return gzip.compress(header.tobuf()) + mib * (size >> 20) + gzip.compress(end)


def test_P0_X9_budgets(env):
    blob = zeros_tar_gz(1 << 30)
    assert len(blob) < 2 << 20  # a 1 GiB bomb in about 1 MiB
    refused(
        env,
        blob,
        "evil.tar holds more than 64 MiB of file data (at 'zeros'), larger than the limit; "
        "it is not a rootfs ruripy will unpack.",
        max_bytes=64 << 20,
    )
    assert os.listdir(env.root) == []


def test_P0_X9_budget_counts_all_files(env):
    members = [m(f"f{i}", data=bytes(1 << 20)) for i in range(10)]
    refused(
        env,
        members,
        "evil.tar holds more than 5 MiB of file data (at 'f5'), larger than the limit; "
        "it is not a rootfs ruripy will unpack.",
        max_bytes=5 << 20,
    )
    assert sum(os.lstat(env.root / n).st_size for n in os.listdir(env.root)) == 5 << 20


def test_P0_X9_entry_budget(env):
    members = [m(f"e{i}", data=b"") for i in range(1001)]
    refused(
        env,
        members,
        "evil.tar has more than 1000 entries, larger than the limit; "
        "it is not a rootfs ruripy will unpack.",
        max_entries=1000,
    )


def test_P0_X9_within_budget(env):
    stats = unpack(env.root, zeros_tar_gz(16 << 20), max_bytes=16 << 20)
    assert stats["bytes"] == 16 << 20
    assert os.lstat(env.root / "zeros").st_size == 16 << 20


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("x" * 256, "has a name component longer than 255 bytes"),
        ("/".join(["d" * 200] * 21), "has a path longer than 4096 bytes"),
    ],
)
def test_P0_X9_path_limits(env, name, why):
    refused(env, [m(name, data=b"")], f"evil.tar: member {name!r} {why}; refusing the archive.")


def test_P0_X9_symlink_target_limit(env):
    refused(
        env,
        [m("s", "sym", link="t" * 4096)],
        "evil.tar: member 's' is a symlink with a target longer than 4095 bytes; "
        "refusing the archive.",
    )


# --- P0-X10: numeric owners ---------------------------------------------------------------


def test_P0_X10_numeric_owner(env):
    unpack(
        env.root,
        [
            m("f", data=b"f", uid=4242, gid=4343, uname="nobody-else", gname="root"),
            m("g", data=b"g", uid=0, gid=0, uname="nobody", gname="nogroup"),
            m("d/", "dir", uid=4242, gid=4343, uname="root", gname="root"),
            m("s", "sym", link="f", uid=4242, gid=4343, uname="root"),
        ],
    )
    for name, ids in (("f", (4242, 4343)), ("g", (0, 0)), ("d", (4242, 4343)), ("s", (4242, 4343))):
        s = os.lstat(env.root / name)
        assert (s.st_uid, s.st_gid) == ids, name


def _subid_base(user: str, path: str) -> int:
    with open(path) as f:
        for line in f:
            name, start, _ = line.strip().split(":")
            if name == user:
                return int(start)
    pytest.skip(f"{user} has no range in {path}: run tests/setup.sh")


def test_P0_X10_numeric_owner_rootless(rootless, workdir, test_user):
    """Rootless, through the CLI: id 4242 of the archive is the user's subordinate id 4242."""
    path = os.path.join(workdir, "owners.tar")
    with open(path, "wb") as f:
        f.write(
            tar(
                [
                    m("d/", "dir", mode=0o500, uid=7, gid=7),
                    m("d/f", data=b"f", uid=4242, gid=4343, uname="nobody-else", gname="root"),
                    m("d/g", "hard", link="d/f", uid=4242, gid=4343, mode=0o4755),
                ]
            )
        )
    os.chmod(path, 0o644)
    r = rootless("import", "ownbox", path)
    assert r.returncode == 0, r.stderr
    d = os.path.join(rootless.host_path("containers", "ownbox", "rootfs"), "d")
    s = os.lstat(os.path.join(d, "f"))
    assert os.lstat(os.path.join(d, "g")).st_ino == s.st_ino and s.st_nlink == 2
    assert stat.S_IMODE(s.st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(d).st_mode) == 0o500
    uid0 = _subid_base(test_user.pw_name, "/etc/subuid")
    gid0 = _subid_base(test_user.pw_name, "/etc/subgid")
    # container id 0 is the user, ids 1.. are the subordinate range
    assert (s.st_uid, s.st_gid) == (uid0 + 4242 - 1, gid0 + 4343 - 1)
    assert os.lstat(d).st_uid == uid0 + 7 - 1


# --- P1-X12: xattrs -----------------------------------------------------------------------

CAP = bytes.fromhex("01000002" + "00200000" + "00000000" + "00000000" + "00000000")
XATTRS = {
    "SCHILY.xattr.trusted.overlay.opaque": "y",
    "SCHILY.xattr.security.capability": CAP.decode("utf-8", "surrogateescape"),
    "SCHILY.xattr.security.selinux": "system_u:object_r:shadow_t:s0",
    "SCHILY.xattr.user.mime_type": "text/plain",
}


def test_P1_X12_xattrs(env):
    stats = unpack(env.root, [m("bin/ping", data=b"p", mode=0o755, pax=XATTRS)])
    names = sorted(os.listxattr(env.root / "bin/ping"))
    assert "trusted.overlay.opaque" not in names and "security.selinux" not in names
    assert os.getxattr(env.root / "bin/ping", "security.capability") == CAP
    assert os.getxattr(env.root / "bin/ping", "user.mime_type") == b"text/plain"
    assert (stats["xattrs"], stats["xattrs_dropped"]) == (2, 2)


def test_P1_X12_xattrs_rootless(env):
    stats = unpack(env.root, [m("bin/ping", data=b"p", mode=0o755, pax=XATTRS)], rootless=True)
    assert os.listxattr(env.root / "bin/ping") == ["user.mime_type"]
    assert (stats["xattrs"], stats["xattrs_dropped"]) == (1, 3)
