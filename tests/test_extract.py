"""ruripy's tar extractor, exporter and tree copier: normal behaviour (run as root).

Archives are built in each test with tarfile; the extractor reads them through a stream
that cannot seek, as it reads a download. The hostile cases live in
tests/security/test_extraction.py.
"""

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
import threading

import pytest
import zstandard

from ruripy.errors import RuripyError
from ruripy.images import archive
from ruripy.images.extract import Trash, extract

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the extractor tests run as root")

T0 = 1_600_000_000
# a security.capability value (cap_net_raw, v2), as pax carries it: bytes as surrogates
CAP = bytes.fromhex("01000002" + "00200000" + "00000000" + "00000000" + "00000000")
CAPS = CAP.decode("utf-8", "surrogateescape")


class Stream:
    """A read-only stream without seek or tell, like a download or a pipe."""

    def __init__(self, data: bytes, name: str | None = None) -> None:
        self._b = io.BytesIO(data)
        if name:
            self.name = name

    def read(self, n: int = -1) -> bytes:
        return self._b.read(n)


def m(
    name,
    kind="file",
    data=b"",
    mode=None,
    uid=0,
    gid=0,
    mtime=T0,
    link="",
    dev=(0, 0),
    uname="",
    gname="",
    pax=None,
):
    """One member: (TarInfo, data)."""
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
    ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    ti.uid, ti.gid, ti.mtime = uid, gid, mtime
    ti.uname, ti.gname = uname, gname
    ti.linkname = link
    ti.devmajor, ti.devminor = dev
    ti.size = len(data) if kind == "file" else 0
    ti.pax_headers = dict(pax or {})
    return ti, data


def tar(members, compression: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    raw = buf.getvalue()
    if compression == "gz":
        return gzip.compress(raw)
    if compression == "xz":
        return lzma.compress(raw)
    if compression == "bz2":
        return bz2.compress(raw)
    if compression == "zst":
        # two frames with a skippable frame between them, as zstd:chunked layers have
        half = len(raw) // 2
        c = zstandard.ZstdCompressor()
        skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"skip"
        return c.compress(raw[:half]) + skippable + c.compress(raw[half:])
    return raw


def unpack(root, members_or_blob, *, rootless=False, compression=None, **kw) -> dict:
    blob = members_or_blob
    if not isinstance(blob, bytes):
        blob = tar(blob, compression)
    return extract(Stream(blob, "test.tar"), str(root), rootless=rootless, **kw)


def kind(path) -> str:
    s = os.lstat(path).st_mode
    for name, test in (
        ("file", stat.S_ISREG),
        ("dir", stat.S_ISDIR),
        ("sym", stat.S_ISLNK),
        ("chr", stat.S_ISCHR),
        ("blk", stat.S_ISBLK),
        ("fifo", stat.S_ISFIFO),
    ):
        if test(s):
            return name
    return "other"


def tree(root) -> dict:
    """Everything a rootfs tar must keep, per path (the round-trip comparison)."""
    root = str(root)
    out = {}
    inodes: dict = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [".", *dirnames, *filenames] if dirpath == root else [*dirnames, *filenames]:
            p = os.path.normpath(os.path.join(dirpath, n))
            s = os.lstat(p)
            rel = os.path.relpath(p, root)
            link = None
            if stat.S_ISREG(s.st_mode) and s.st_nlink > 1:
                link = inodes.setdefault((s.st_dev, s.st_ino), rel)
            xattrs = {}
            if not stat.S_ISLNK(s.st_mode):
                for x in os.listxattr(p, follow_symlinks=False):
                    xattrs[x] = os.getxattr(p, x, follow_symlinks=False)
            out[rel] = (
                kind(p),
                stat.S_IMODE(s.st_mode),
                s.st_uid,
                s.st_gid,
                s.st_mtime_ns,
                s.st_size if not stat.S_ISDIR(s.st_mode) else 0,
                os.readlink(p) if stat.S_ISLNK(s.st_mode) else None,
                s.st_rdev if stat.S_ISCHR(s.st_mode) or stat.S_ISBLK(s.st_mode) else 0,
                link,
                xattrs,
                open(p, "rb").read() if stat.S_ISREG(s.st_mode) else None,
            )
    return out


# --- compression -----------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "gz", "xz", "bz2", "zst"])
def test_each_compression_detected_by_content(tmp_path, compression):
    big = os.urandom(300_000) * 8  # spans many read chunks and zstd frames
    blob = tar(
        [m("etc/", "dir"), m("etc/os-release", data=b"ID=test\n"), m("big", data=big)],
        compression,
    )
    stats = extract(Stream(blob), str(tmp_path / "r"), rootless=False)
    assert (tmp_path / "r" / "etc" / "os-release").read_bytes() == b"ID=test\n"
    assert (tmp_path / "r" / "big").read_bytes() == big
    assert stats["entries"] == 3 and stats["files"] == 2 and stats["bytes"] == len(big) + 8


def test_reads_a_real_pipe_without_seeking(tmp_path):
    blob = tar([m("a", data=b"x" * 100_000), m("b/", "dir"), m("b/c", data=b"c")], "gz")
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            for i in range(0, len(blob), 4096):
                f.write(blob[i : i + 4096])

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb", buffering=0) as f:
        extract(f, str(tmp_path / "r"), rootless=False)
    t.join()
    assert (tmp_path / "r" / "a").read_bytes() == b"x" * 100_000
    assert (tmp_path / "r" / "b" / "c").read_bytes() == b"c"


@pytest.mark.parametrize("compression", [None, "gz"])
def test_reads_a_file(tmp_path, compression):
    """A plain tar in a regular file is read in place; a compressed one ahead, by a thread."""
    path = tmp_path / "a.tar"
    blob = tar([m("a", data=b"a" * 70_000), m("b", "sym", link="a")], compression)
    path.write_bytes(blob)
    with open(path, "rb") as f:
        assert extract(f, str(tmp_path / "r"), rootless=False)["entries"] == 2
    assert (tmp_path / "r" / "a").read_bytes() == b"a" * 70_000
    path.write_bytes(blob[: len(blob) // 2])
    with open(path, "rb") as f, pytest.raises(RuripyError) as e:
        extract(f, str(tmp_path / "r2"), rootless=False)
    assert str(e.value).startswith(f"{path} is truncated or corrupt (")


def test_a_plain_tar_whose_first_name_looks_like_a_magic(tmp_path):
    """A first member named like a bzip2 or gzip magic is still a plain tar."""
    stats = unpack(tmp_path, [m("BZh91AY&SY", data=b"1"), m("\x1f\x8bx", data=b"2")])
    assert stats["files"] == 2
    assert (tmp_path / "BZh91AY&SY").read_bytes() == b"1"


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "test.tar is empty, not a tar archive (gzip, xz, zstd, bzip2 or plain)."),
        (b"hello world\n" * 100, "test.tar is not a tar archive (gzip, xz, zstd, bzip2 or plain)."),
        (gzip.compress(b"just text\n" * 100), "test.tar is not a tar archive"),
        (zstandard.ZstdCompressor().compress(b"\0" * 10), "test.tar is not a tar archive"),
    ],
    ids=["empty", "text", "gzip-text", "zstd-zeros"],  # stable ids: gzip data holds a time
)
def test_not_a_tar(tmp_path, blob, message):
    with pytest.raises(RuripyError) as e:
        extract(Stream(blob, "test.tar"), str(tmp_path / "r"), rootless=False)
    assert str(e.value).startswith(message)
    assert e.value.status == 125


@pytest.mark.parametrize("compression", [None, "gz", "xz", "bz2", "zst"])
def test_truncated_archive(tmp_path, compression):
    blob = tar([m("a", data=os.urandom(50_000)), m("b", data=os.urandom(50_000))], compression)
    with pytest.raises(RuripyError) as e:
        extract(Stream(blob[: len(blob) // 2], "cut.tar"), str(tmp_path / "r"), rootless=False)
    assert str(e.value).startswith("cut.tar is truncated or corrupt (")


def test_truncated_at_a_member_boundary(tmp_path):
    """A tar that stops after a whole member, without its end blocks, is truncated too."""
    blob = tar([m("a", data=b"a" * 512), m("b", data=b"b")])
    cut = blob[: blob.index(b"a" * 512) + 512]  # header and data of "a", then nothing
    with pytest.raises(RuripyError) as e:
        extract(Stream(cut, "cut.tar"), str(tmp_path / "r"), rootless=False)
    assert str(e.value) == (
        "cut.tar is truncated or corrupt (it ends without the end-of-archive blocks)."
    )


def test_corrupt_compressed_data(tmp_path):
    blob = bytearray(tar([m("a", data=os.urandom(100_000))], "gz"))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(RuripyError) as e:
        extract(Stream(bytes(blob), "bad.tar.gz"), str(tmp_path / "r"), rootless=False)
    assert str(e.value).startswith("bad.tar.gz is truncated or corrupt (")


# --- what is kept -----------------------------------------------------------------------


def test_owners_modes_setuid_and_times(tmp_path):
    stats = unpack(
        tmp_path,
        [
            m("./", "dir", mode=0o755, mtime=T0 - 5),
            m("usr/bin/", "dir", mode=0o755, uid=0, gid=0),
            m("usr/bin/su", data=b"#!", mode=0o4755, uname="nobody"),
            m("usr/bin/wall", data=b"#!", mode=0o2755, uid=0, gid=5, gname="tty"),
            m("tmp/", "dir", mode=0o1777, mtime=T0 + 1),
            m("home/u/", "dir", mode=0o700, uid=1000, gid=1000),
            m("home/u/f", data=b"f", mode=0o600, uid=1000, gid=1000),
            m("ro/", "dir", mode=0o555, mtime=T0 + 2),
            m("ro/inside", data=b"written after ro/", mode=0o444),
            m("ro/sub/", "dir", mode=0o500, mtime=T0 + 3),
            m("ro/sub/deep", data=b"d", uid=4242, gid=4343, mtime=T0 + 4),
            m("frac", data=b"", pax={"mtime": "1600000000.123456789"}),
        ],
    )
    assert stats["owner_errors"] == 0

    def st(p):
        return os.lstat(tmp_path / p)

    assert stat.S_IMODE(st("usr/bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(st("usr/bin/wall").st_mode) == 0o2755 and st("usr/bin/wall").st_gid == 5
    assert stat.S_IMODE(st("tmp").st_mode) == 0o1777 and st("tmp").st_mtime_ns == (T0 + 1) * 10**9
    assert (st("home/u").st_uid, st("home/u/f").st_gid) == (1000, 1000)
    assert stat.S_IMODE(st("ro").st_mode) == 0o555 and st("ro").st_mtime == T0 + 2
    assert stat.S_IMODE(st("ro/sub").st_mode) == 0o500 and st("ro/sub").st_mtime == T0 + 3
    assert (st("ro/sub/deep").st_uid, st("ro/sub/deep").st_gid) == (4242, 4343)
    assert st("ro/inside").st_mtime == T0 and stat.S_IMODE(st("ro/inside").st_mode) == 0o444
    assert st("frac").st_mtime_ns == 1600000000_123456789
    root = os.lstat(tmp_path)
    assert stat.S_IMODE(root.st_mode) == 0o755 and root.st_mtime == T0 - 5


def test_symlinks_and_hard_links(tmp_path):
    unpack(
        tmp_path,
        [
            m("usr/bin/busybox", data=b"\x7fELF", mode=0o755),
            m("usr/bin/sh", "hard", link="usr/bin/busybox", mode=0o755),
            m("bin", "sym", link="usr/bin", mtime=T0 + 7, uid=3, gid=4),
            m("etc/localtime", "sym", link="/usr/share/zoneinfo/UTC"),
            m("usr/bin/ls", "hard", link="./usr/bin/busybox", mode=0o4711),
            m("usr/share/zoneinfo/", "dir"),
        ],
    )
    a, b, c = (os.lstat(tmp_path / "usr/bin" / n) for n in ("busybox", "sh", "ls"))
    assert a.st_ino == b.st_ino == c.st_ino and a.st_nlink == 3
    # the last link member's attributes are on the shared inode (images.md 3.8)
    assert stat.S_IMODE(a.st_mode) == 0o4711
    assert os.readlink(tmp_path / "bin") == "usr/bin"
    s = os.lstat(tmp_path / "bin")
    assert (s.st_mtime, s.st_uid, s.st_gid) == (T0 + 7, 3, 4)
    assert os.readlink(tmp_path / "etc/localtime") == "/usr/share/zoneinfo/UTC"


def test_later_member_replaces_earlier(tmp_path):
    unpack(
        tmp_path,
        [
            m("a", data=b"first"),
            m("a", data=b"second"),
            m("d/", "dir"),
            m("d/x", data=b"x"),
            m("d", data=b"now a file"),
            m("s", "sym", link="a"),
            m("s/", "dir", mode=0o700),
            m("f", data=b"file"),
            m("f", "sym", link="/etc"),
        ],
    )
    assert (tmp_path / "a").read_bytes() == b"second"
    assert (tmp_path / "d").read_bytes() == b"now a file"
    assert kind(tmp_path / "s") == "dir" and stat.S_IMODE(os.lstat(tmp_path / "s").st_mode) == 0o700
    assert os.readlink(tmp_path / "f") == "/etc"


def test_merged_usr_parents_followed_inside(tmp_path):
    unpack(tmp_path, [m("usr/bin/", "dir"), m("bin", "sym", link="usr/bin")])
    unpack(tmp_path, [m("bin/ls", data=b"ls"), m("var/run", "sym", link="/run")])
    unpack(tmp_path, [m("run/", "dir"), m("var/run/x.pid", data=b"1")])
    assert (tmp_path / "usr/bin/ls").read_bytes() == b"ls"
    assert (tmp_path / "run/x.pid").read_bytes() == b"1"
    assert kind(tmp_path / "bin") == "sym"


def test_fifos_and_devices(tmp_path):
    members = [
        m("dev/", "dir"),
        m("dev/null", "chr", dev=(1, 3), mode=0o666),
        m("dev/zero", "chr", dev=(1, 5), mode=0o666),
        m("dev/console", "chr", dev=(5, 1), mode=0o600),
        m("dev/mem", "chr", dev=(1, 1), mode=0o640),
        m("dev/sda", "blk", dev=(8, 0), mode=0o660),
        m("tmp/null", "chr", dev=(1, 3), mode=0o666),
        m("run/initctl", "fifo", mode=0o600, uid=7),
    ]
    priv = tmp_path / "priv"
    stats = unpack(priv, members)
    assert sorted(os.listdir(priv / "dev")) == ["console", "null", "zero"]
    assert os.lstat(priv / "dev/null").st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(os.lstat(priv / "dev/null").st_mode) == 0o666
    assert not (priv / "tmp/null").exists()
    assert kind(priv / "run/initctl") == "fifo" and os.lstat(priv / "run/initctl").st_uid == 7
    assert (stats["devices"], stats["skipped_devices"], stats["fifos"]) == (3, 3, 1)
    rootless = tmp_path / "rootless"
    stats = unpack(rootless, members, rootless=True)
    assert os.listdir(rootless / "dev") == []
    assert kind(rootless / "run/initctl") == "fifo"
    assert (stats["devices"], stats["skipped_devices"], stats["fifos"]) == (0, 6, 1)


def test_xattrs(tmp_path):
    members = [
        m("bin/ping", data=b"p", mode=0o755, pax={"SCHILY.xattr.security.capability": CAPS}),
        m("f", data=b"f", pax={"SCHILY.xattr.user.note": "hello", "SCHILY.xattr.trusted.x": "t"}),
        m("d/", "dir", pax={"SCHILY.xattr.user.dir": "yes"}),
    ]
    stats = unpack(tmp_path / "p", members)
    assert os.getxattr(tmp_path / "p/bin/ping", "security.capability") == CAP
    assert os.getxattr(tmp_path / "p/f", "user.note") == b"hello"
    assert os.getxattr(tmp_path / "p/d", "user.dir") == b"yes"
    assert "trusted.x" not in os.listxattr(tmp_path / "p/f")
    assert (stats["xattrs"], stats["xattrs_dropped"]) == (3, 1)
    stats = unpack(tmp_path / "r", members, rootless=True)
    assert "security.capability" not in os.listxattr(tmp_path / "r/bin/ping")
    assert os.getxattr(tmp_path / "r/f", "user.note") == b"hello"
    assert (stats["xattrs"], stats["xattrs_dropped"]) == (2, 2)


def test_progress_is_reported(tmp_path):
    calls = []
    unpack(
        tmp_path,
        [m(f"f{i}", data=b"x") for i in range(3000)],
        progress=lambda n, b: calls.append((n, b)),
    )
    assert calls[-1] == (3000, 3000)
    assert calls[0] == (1024, 1024)


# --- OCI layers: whiteouts and opaque folders ------------------------------------------


def layers(root, *layer_members):
    for members in layer_members:
        unpack(root, members, whiteouts=True)


def test_whiteouts_and_opaque_folders(tmp_path):
    lower = [
        m("etc/", "dir"),
        m("etc/a", data=b"a"),
        m("etc/b", data=b"b"),
        m("etc/conf.d/", "dir"),
        m("etc/conf.d/x.conf", data=b"x"),
        m("etc/conf.d/sub/", "dir"),
        m("etc/conf.d/sub/y", data=b"y"),
        m("etc/opq-first/", "dir"),
        m("etc/opq-first/old", data=b"old"),
        m("keepdir/", "dir"),
        m("keepdir/f", data=b"f"),
        m("lnk", "sym", link="/etc"),
        m("run/", "dir"),
        m("var/run", "sym", link="/run"),
        m("usr/lib/file", data=b"lib"),
    ]
    upper = [
        m("etc/.wh.a", data=b""),
        m(".wh.keepdir", data=b""),
        m(".wh.lnk", data=b""),
        # the opaque marker after its siblings (GNU tar, umoci): siblings survive
        m("etc/conf.d/c.conf", data=b"c"),
        m("etc/conf.d/sub/", "dir"),
        m("etc/conf.d/sub/z", data=b"z"),
        m("etc/conf.d/.wh..wh..opq", data=b""),
        # and before them
        m("etc/opq-first/.wh..wh..opq", data=b""),
        m("etc/opq-first/new", data=b"new"),
        # a symlinked parent planted by the lower layer
        m("var/run/x.pid", data=b"42"),
        # a whiteout never hides its own layer's entry
        m("etc/new", data=b"n"),
        m("etc/.wh.new", data=b""),
    ]
    layers(tmp_path, lower, upper)
    assert sorted(os.listdir(tmp_path / "etc")) == ["b", "conf.d", "new", "opq-first"]
    assert sorted(os.listdir(tmp_path / "etc/conf.d")) == ["c.conf", "sub"]
    assert os.listdir(tmp_path / "etc/conf.d/sub") == ["z"]  # lower y hidden
    assert os.listdir(tmp_path / "etc/opq-first") == ["new"]
    assert not os.path.lexists(tmp_path / "keepdir")
    assert not os.path.lexists(tmp_path / "lnk")  # the link removed, not followed
    assert (tmp_path / "run/x.pid").read_bytes() == b"42"
    # a whiteout in a later layer for a file from an earlier one
    layers(tmp_path, [m("usr/lib/.wh.file", data=b""), m("usr/lib/other", data=b"o")])
    assert os.listdir(tmp_path / "usr/lib") == ["other"]
    # no marker is ever written
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        assert not [n for n in dirnames + filenames if n.startswith(".wh.")], dirpath


def test_opaque_through_symlinked_parent(tmp_path):
    """The layer writes run/ via var/run -> /run; an opaque run/ keeps what it wrote."""
    layers(
        tmp_path,
        [m("run/", "dir"), m("run/lower", data=b"l"), m("var/run", "sym", link="/run")],
        [m("var/run/mine", data=b"m"), m("run/.wh..wh..opq", data=b"")],
    )
    assert os.listdir(tmp_path / "run") == ["mine"]


def test_trash_gives_the_same_tree(tmp_path):
    """What layers remove can go through a Trash (moved aside, deleted by threads while the
    extraction goes on): the tree is the same, and the trash folder is gone after."""
    lower = [
        m("etc/", "dir"),
        m("etc/a", data=b"a"),
        m("etc/keep", data=b"k"),
        m("big/", "dir"),
        *[m(f"big/s{i}/", "dir") for i in range(20)],
        *[m(f"big/s{i}/f{j}", data=b"%d" % j) for i in range(20) for j in range(30)],
        m("ro/", "dir", mode=0o555),
        m("ro/f", data=b"r", mode=0o444),
        m("todir", "sym", link="/etc"),
        m("tofile/", "dir"),
        m("tofile/x", data=b"x"),
        m("opq/", "dir"),
        m("opq/old/", "dir"),
        m("opq/old/y", data=b"y"),
        m("same", data=b"old"),
    ]
    upper = [
        m("etc/.wh.a", data=b""),
        m(".wh.big", data=b""),
        m(".wh.ro", data=b""),
        m("todir/", "dir"),
        m("todir/z", data=b"z"),
        m("tofile", data=b"now a file"),
        m("opq/.wh..wh..opq", data=b""),
        m("opq/new", data=b"n"),
        m("same", data=b"new"),
    ]
    plain, trashed = tmp_path / "plain", tmp_path / "trashed"
    layers(plain, lower, upper)
    with Trash(f"{trashed}.trash") as trash:
        for members in (lower, upper):
            unpack(trashed, members, whiteouts=True, trash=trash)

    def without_folder_times(t):  # a removal sets its folder's mtime to "now"
        return {k: v[:4] + (None if v[0] == "dir" else v[4],) + v[5:] for k, v in t.items()}

    assert without_folder_times(tree(trashed)) == without_folder_times(tree(plain))
    assert sorted(os.listdir(trashed)) == ["etc", "opq", "same", "todir", "tofile"]
    assert sorted(os.listdir(tmp_path)) == ["plain", "trashed"]


@pytest.mark.parametrize("marker", [".wh.", ".wh..", ".wh..."])
def test_invalid_whiteouts_refused(tmp_path, marker):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/keep").write_text("k")
    with pytest.raises(RuripyError) as e:
        unpack(tmp_path, [m(f"etc/{marker}", data=b"")], whiteouts=True)
    assert str(e.value) == (
        f"test.tar: member 'etc/{marker}' is a whiteout that names no file; refusing the archive."
    )
    assert os.listdir(tmp_path / "etc") == ["keep"]


def test_whiteout_names_are_files_outside_layers(tmp_path):
    unpack(tmp_path, [m("a/.wh.b", data=b"plain"), m("a/.wh..wh..opq", data=b"")])
    assert sorted(os.listdir(tmp_path / "a")) == [".wh..wh..opq", ".wh.b"]


# --- export, round trip, copy ----------------------------------------------------------


def rich_members():
    long = "l" * 120
    return [
        m("./", "dir", mode=0o755, mtime=T0),
        m("bin", "sym", link="usr/bin"),
        m("usr/", "dir", mtime=T0 + 1),
        m("usr/bin/", "dir", mtime=T0 + 2),
        m("usr/bin/busybox", data=b"\x7fELF" + os.urandom(5000), mode=0o755),
        m("usr/bin/sh", "hard", link="usr/bin/busybox", mode=0o755),
        m("usr/bin/su", data=b"su", mode=0o4755, uid=0, gid=0),
        m("usr/bin/ping", data=b"p", mode=0o755),
        m("etc/", "dir", mtime=T0 + 3),
        m("etc/shadow", data=b"s", mode=0o640, gid=42),
        m("etc/localtime", "sym", link="/usr/share/zoneinfo/UTC", uid=0),
        m("etc/frac", data=b"f", pax={"mtime": "1600000000.5"}),
        m("home/", "dir"),
        m("home/u/", "dir", mode=0o700, uid=1000, gid=1000, mtime=T0 + 4),
        m(f"home/u/{long}/{long}", data=b"deep", uid=1000, gid=1000),
        m("home/u/caf\u00e9", data=b"utf8"),
        m("tmp/", "dir", mode=0o1777),
        m("ro/", "dir", mode=0o555),
        m("ro/f", data=b"r", mode=0o444, pax={"SCHILY.xattr.user.k": "v"}),
        m("dev/", "dir"),
        m("dev/null", "chr", dev=(1, 3), mode=0o666),
        m("run/fifo", "fifo", mode=0o620, uid=5),
    ]


@pytest.mark.parametrize("compression", [None, "gz", "xz", "zst"])
def test_round_trip_export_then_extract(tmp_path, compression):
    members = rich_members()
    members[7][0].pax_headers["SCHILY.xattr.security.capability"] = CAPS
    first = tmp_path / "first"
    unpack(first, members)
    raw_name = os.fsencode(first / "home") + b"/bad-\xff-name"
    with open(raw_name, "wb") as f:
        f.write(b"latin-1 name")
    os.utime(raw_name, ns=(T0 * 10**9 + 17, T0 * 10**9 + 17))
    os.utime(first / "home", ns=(T0 * 10**9, T0 * 10**9))
    out = io.BytesIO()
    stats = archive.export(str(first), out, compression)
    assert stats["entries"] == len(tree(first))
    blob = out.getvalue()
    magic = {None: b"", "gz": b"\x1f\x8b", "xz": b"\xfd7zXZ", "zst": b"\x28\xb5\x2f\xfd"}
    assert blob.startswith(magic[compression])
    second = tmp_path / "second"
    extract(Stream(blob), str(second), rootless=False)
    assert tree(second) == tree(first)
    assert os.lstat(second / "usr/bin/sh").st_ino == os.lstat(second / "usr/bin/busybox").st_ino
    assert os.getxattr(second / "usr/bin/ping", "security.capability") == CAP


def test_export_is_read_by_gnu_tar(tmp_path):
    """The export is an ordinary tar (numeric owners, no user names)."""
    import subprocess

    unpack(tmp_path / "src", rich_members())
    path = tmp_path / "x.tar"
    with open(path, "wb") as f:
        archive.export(str(tmp_path / "src"), f, None)
    listing = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", str(path)], capture_output=True, text=True, check=True
    ).stdout
    line = next(x for x in listing.splitlines() if x.endswith("./usr/bin/su"))
    assert line.startswith("-rwsr-xr-x 0/0")
    assert "./usr/bin/sh link to ./usr/bin/busybox" in listing
    (tmp_path / "gnu").mkdir()
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "-C", str(tmp_path / "gnu"), "-xpf", str(path)],
        check=True,
    )
    assert tree(tmp_path / "gnu") == tree(tmp_path / "src")


def test_copy_tree(tmp_path):
    src = tmp_path / "src"
    unpack(src, rich_members())
    (src / "upper").mkdir()
    os.mknod(src / "upper/gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # overlay whiteout
    os.setxattr(src / "upper", "trusted.overlay.opaque", b"y")
    os.utime(src / "upper", ns=(T0 * 10**9, T0 * 10**9))
    archive.copy_tree(str(src), str(tmp_path / "copy"), rootless=False)
    assert tree(tmp_path / "copy") == tree(src)
    # rootless: device nodes go (the whiteout stays), trusted.* and security.* go
    archive.copy_tree(str(src), str(tmp_path / "rl"), rootless=True)
    assert kind(tmp_path / "rl/upper/gone") == "chr"
    assert not os.path.lexists(tmp_path / "rl/dev/null")
    assert os.listxattr(tmp_path / "rl/upper") == []


def test_copy_tree_of_a_missing_folder(tmp_path):
    with pytest.raises(RuripyError) as e:
        archive.copy_tree(str(tmp_path / "nope"), str(tmp_path / "dst"), rootless=False)
    assert str(e.value) == f"cannot read {tmp_path}/nope: No such file or directory."


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("a.tar", None),
        ("a.TAR.GZ", "gz"),
        ("a.tgz", "gz"),
        ("a.tar.xz", "xz"),
        ("a.txz", "xz"),
        ("a.tar.zst", "zst"),
        ("/x/y.tzst", "zst"),
    ],
)
def test_compression_for(name, want):
    assert archive.compression_for(name) == want


def test_compression_for_unknown_suffix():
    with pytest.raises(RuripyError) as e:
        archive.compression_for("backup.zip")
    assert str(e.value) == (
        "backup.zip: unknown archive suffix; use .tar, .tar.gz (.tgz), .tar.xz (.txz) "
        "or .tar.zst (.tzst)."
    )


def test_rootfs_that_is_a_symlink_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "link")
    with pytest.raises(RuripyError) as e:
        unpack(tmp_path / "link", [m("f", data=b"f")])
    assert str(e.value) == (
        f"cannot unpack test.tar into {tmp_path}/link: the root folder is a symlink."
    )
    assert os.listdir(tmp_path / "real") == []
