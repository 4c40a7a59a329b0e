"""In-root path resolution (ruripy.sandbox.inroot) and the extractor built on it: nothing
outside the root is ever opened, created or written, whatever the symlinks inside say
(security.md section 0 rule 1, P1-K1, and the P2 property fuzzing).

Every test runs twice: with openat2 and with the user-space component walk alone.
The property tests build random trees of symlinks (absolute, relative, `..`-laden, loops,
pointing at a sentinel folder beside the root) and hard links, and check every answer.
"""

import ctypes
import errno
import io
import os
import shutil
import stat
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruripy.errors import RuripyError
from ruripy.images import extract as extract_mod
from ruripy.sandbox import inroot


@pytest.fixture(params=["openat2", "walk"])
def mode(request, monkeypatch):
    """Tests taking it run twice: with openat2 and with the fallback walk forced."""
    monkeypatch.setattr(inroot, "USE_OPENAT2", request.param == "openat2")
    return request.param


def where(fd: int) -> str:
    try:
        return os.readlink(inroot.fd_path(fd))
    finally:
        os.close(fd)


def snapshot(path: str) -> list:
    """Everything under `path`: names, types, sizes, mtimes (the sentinel check)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            s = os.lstat(p)
            out.append((os.path.relpath(p, path), stat.S_IFMT(s.st_mode), s.st_size, s.st_mtime_ns))
    s = os.lstat(path)
    return [(".", s.st_mode, s.st_mtime_ns, s.st_nlink), *sorted(out)]


@pytest.fixture
def tree(tmp_path, mode):
    """root/ with hostile symlinks; outside/ beside it with a sentinel file."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("host data\n")
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "hosts").write_text("inside\n")
    os.symlink(str(outside), root / "abs")  # absolute: means root/<tmp>/outside
    os.symlink("../../../../../../" + str(outside).lstrip("/"), root / "dotdot")
    os.symlink("/", root / "slash")
    os.symlink("..", root / "up")
    os.symlink("usr/bin", root / "bin")
    os.symlink("/etc/hosts", root / "hostslink")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("/missing/dir", root / "dangling")
    os.symlink("/proc/self/root", root / "procroot")
    return root, outside


def test_open_root_refuses_symlink(tmp_path, mode):
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "link")
    with pytest.raises(OSError) as e:
        inroot.open_root(str(tmp_path / "link"))
    assert e.value.errno == errno.ELOOP
    fd = inroot.open_root(str(tmp_path / "real"))
    assert where(fd) == str(tmp_path / "real")


def test_resolve_clamps_links_and_dotdot(tree):
    root, outside = tree
    before = snapshot(str(outside))
    r = inroot.open_root(str(root))
    assert where(inroot.resolve(r, "bin")) == f"{root}/usr/bin"
    assert where(inroot.resolve(r, "/slash/../../..")) == str(root)
    assert where(inroot.resolve(r, "up/up/etc")) == f"{root}/etc"
    assert where(inroot.resolve(r, "hostslink")) == f"{root}/etc/hosts"
    assert where(inroot.resolve(r, "hostslink", os.O_PATH | os.O_NOFOLLOW)) == f"{root}/hostslink"
    for name in ("abs", "dotdot", "abs/victim", "dotdot/victim", "dangling", "procroot/etc"):
        with pytest.raises(FileNotFoundError):
            inroot.resolve(r, name)
    with pytest.raises(OSError) as e:
        inroot.resolve(r, "loop1")
    assert e.value.errno == errno.ELOOP
    with pytest.raises(OSError) as e:
        inroot.resolve(r, "etc/hosts/x")
    assert e.value.errno == errno.ENOTDIR
    # reading through a link gets the in-root file
    fd = inroot.resolve(r, "hostslink", os.O_RDONLY)
    with os.fdopen(fd) as f:
        assert f.read() == "inside\n"
    assert snapshot(str(outside)) == before
    os.close(r)


def test_create_through_links_lands_inside(tree):
    root, outside = tree
    before = snapshot(str(outside))
    r = inroot.open_root(str(root))
    with pytest.raises(FileNotFoundError):
        inroot.resolve(r, "dangling", os.O_WRONLY | os.O_CREAT, 0o600)
    os.symlink("/etc/created", root / "dangfile")
    fd = inroot.resolve(r, "dangfile", os.O_WRONLY | os.O_CREAT, 0o600)
    assert where(fd) == f"{root}/etc/created"
    with pytest.raises(FileExistsError):
        inroot.resolve(r, "hostslink", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    pfd, name = inroot.resolve_parent(r, "abs/victim", create=True)
    assert (where(pfd), name) == (f"{root}{outside}", "victim")
    os.symlink(str(outside) + "/victim", root / "etc" / "resolv.conf")
    fd = inroot.resolve(r, "etc/resolv.conf", os.O_WRONLY | os.O_CREAT, 0o600)
    assert where(fd) == f"{root}{outside}/victim"
    pfd, name = inroot.resolve_parent(r, "dotdot/sub/x", create=True, mode=0o700)
    assert (where(pfd), name) == (f"{root}{outside}/sub", "x")
    assert inroot.mkdirs(r, "up/up/new/a/b") >= 0
    assert os.path.isdir(root / "new" / "a" / "b")
    assert where(inroot.mkdirs(r, "bin/x")) == f"{root}/usr/bin/x"
    assert snapshot(str(outside)) == before
    for bad in ("", "/", "a/..", "."):
        with pytest.raises(OSError) as e:
            inroot.resolve_parent(r, bad)
        assert e.value.errno == errno.EINVAL
    with pytest.raises(NotADirectoryError):
        inroot.mkdirs(r, "etc/hosts/sub")
    os.close(r)


def test_mkdirs_follows_dangling_link_inside(tree):
    root, outside = tree
    r = inroot.open_root(str(root))
    assert where(inroot.mkdirs(r, "dangling/x")) == f"{root}/missing/dir/x"
    os.symlink(str(outside) + "/new", root / "conf")
    assert where(inroot.mkdirs(r, "conf/x")) == f"{root}{outside}/new/x"
    assert not os.path.exists(outside / "new")
    os.close(r)


def test_nul_and_loops(tree):
    root, _ = tree
    r = inroot.open_root(str(root))
    with pytest.raises(OSError) as e:
        inroot.resolve(r, "etc\0/x")
    assert e.value.errno == errno.EINVAL
    os.symlink("self/x", root / "self")
    with pytest.raises(OSError) as e:
        inroot.mkdirs(r, "self/y")
    assert e.value.errno == errno.ELOOP
    os.close(r)


def _seccomp_deny_openat2(err: int) -> None:
    """Install a filter making openat2 fail with `err`, as a container runtime's profile may."""
    libc = ctypes.CDLL(None, use_errno=True)

    class Insn(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        ]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]

    insns = (Insn * 4)(
        Insn(0x20, 0, 0, 0),  # ld [nr]
        Insn(0x15, 0, 1, 437),  # jeq openat2
        Insn(0x06, 0, 0, 0x00050000 | err),  # ret ERRNO(err)
        Insn(0x06, 0, 0, 0x7FFF0000),  # ret ALLOW
    )
    prog = Prog(4, insns)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0  # PR_SET_SECCOMP, FILTER


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM])
def test_fallback_when_openat2_is_filtered(tmp_path, monkeypatch, err):
    """openat2 refused by seccomp (or missing) switches to the walk, with the same answers."""
    monkeypatch.setattr(inroot, "USE_OPENAT2", True)
    root = tmp_path
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    os.symlink("usr/bin", root / "bin")
    os.symlink("..", root / "up")
    os.symlink("/", root / "slash")
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: filter, resolve, report, exit without pytest's cleanup
        code = 1
        try:
            os.close(rd)
            _seccomp_deny_openat2(err)
            inroot._have_openat2 = None
            r = inroot.open_root(str(root))
            got = [where(inroot.resolve(r, "bin")), where(inroot.resolve(r, "up/slash/../etc"))]
            got.append(str(inroot._have_openat2))
            os.write(wr, "\n".join(got).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(wr)
    with os.fdopen(rd) as f:
        out = f.read()
    assert os.waitpid(pid, 0)[1] == 0
    assert out.split("\n") == [f"{root}/usr/bin", f"{root}/etc", "False"]


# --- property tests: random trees of links ----------------------------------------------

NAMES = ["a", "b", "c", "d"]
SENTINEL = "@SENTINEL@"  # replaced by the sentinel's absolute path

component = st.sampled_from(NAMES + ["..", ".", "", SENTINEL.lower()])
rel_path = st.lists(component, min_size=1, max_size=5).map("/".join)
link_target = st.one_of(
    rel_path,
    rel_path.map(lambda p: "/" + p),
    st.sampled_from(
        [
            SENTINEL,
            SENTINEL + "/x",
            "../" + SENTINEL,
            "../../../../../../../.." + SENTINEL,
            "/..",
            "/",
            "..",
            "../..",
            "/proc/self/cwd",
            "/proc/self/root",
        ]
    ),
)
entry = st.tuples(
    st.sampled_from(["dir", "file", "link", "hardlink"]),
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join),
    link_target,
)
query = st.one_of(rel_path, rel_path.map(lambda p: "/" + p), link_target)


def _fill(text: str, sentinel: str) -> str:
    return text.replace(SENTINEL.lower(), sentinel.lstrip("/")).replace(SENTINEL, sentinel)


def build_tree(root: str, entries, sentinel: str) -> None:
    """Create the entries with plain host calls (the test controls this tree, not an image)."""
    files = []
    for kind, path, target in entries:
        p = os.path.join(root, path)
        parent = os.path.dirname(p)
        if not os.path.isdir(parent) or os.path.islink(parent) or os.path.lexists(p):
            continue
        if os.path.realpath(parent) != parent:
            continue
        if kind == "dir":
            os.mkdir(p)
        elif kind == "file":
            with open(p, "w") as f:
                f.write(path)
            files.append(p)
        elif kind == "link" and target:
            os.symlink(_fill(target, sentinel), p)
        elif kind == "hardlink" and files:
            os.link(files[0], p)


def inside(root: str, real: str) -> bool:
    return real == root or real.startswith(root + "/")


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(entries=st.lists(entry, max_size=14), queries=st.lists(query, min_size=1, max_size=8))
def test_property_never_outside(mode, entries, queries):
    base = tempfile.mkdtemp(prefix="inroot-prop.")
    try:
        root = os.path.join(base, "root")
        sentinel = os.path.join(base, "sentinel")
        os.mkdir(root)
        os.mkdir(sentinel)
        os.mkdir(os.path.join(sentinel, "x"))
        build_tree(root, entries, sentinel)
        before = snapshot(sentinel)
        r = inroot.open_root(root)
        for q in queries:
            q = _fill(q, sentinel)
            for flags in (os.O_PATH, os.O_PATH | os.O_NOFOLLOW, os.O_RDONLY | os.O_DIRECTORY):
                try:
                    fd = inroot.resolve(r, q, flags)
                except OSError as e:
                    assert e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP), e
                else:
                    assert inside(root, where(fd)), q
            try:
                fd = inroot.resolve(r, q, os.O_WRONLY | os.O_CREAT, 0o600)
            except OSError as e:
                assert e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR), e
            else:
                assert inside(root, where(fd)), q
            try:
                fd, name = inroot.resolve_parent(r, q + "/new", create=True)
            except OSError as e:
                assert e.errno in (errno.ENOTDIR, errno.ELOOP, errno.EINVAL), e
            else:
                assert inside(root, where(fd)) and "/" not in name
            try:
                fd = inroot.mkdirs(r, q)
            except OSError as e:
                assert e.errno in (errno.ENOTDIR, errno.ELOOP, errno.EEXIST), e
            else:
                assert inside(root, where(fd)), q
        os.close(r)
        assert snapshot(sentinel) == before
        assert sorted(os.listdir(base)) == ["root", "sentinel"]
    finally:
        shutil.rmtree(base)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(entries=st.lists(entry, max_size=12), queries=st.lists(query, min_size=1, max_size=10))
def test_property_walk_matches_openat2(mode, monkeypatch, entries, queries):
    """The fallback walk gives the same answer (same inode, or same errno) as the kernel."""
    if not inroot._openat2_usable():
        pytest.skip("compares the walk with openat2, which this kernel lacks")
    base = tempfile.mkdtemp(prefix="inroot-cmp.")
    try:
        root = os.path.join(base, "root")
        sentinel = os.path.join(base, "sentinel")
        os.mkdir(root)
        os.mkdir(sentinel)
        build_tree(root, entries, sentinel)
        r = inroot.open_root(root)

        def answer(q, flags):
            try:
                fd = inroot.resolve(r, q, flags)
            except OSError as e:
                return e.errno
            try:
                s = os.fstat(fd)
                return (s.st_dev, s.st_ino)
            finally:
                os.close(fd)

        for q in queries:
            q = _fill(q, sentinel)
            for flags in (os.O_PATH, os.O_PATH | os.O_NOFOLLOW, os.O_PATH | os.O_DIRECTORY):
                monkeypatch.setattr(inroot, "USE_OPENAT2", True)
                kernel = answer(q, flags)
                monkeypatch.setattr(inroot, "USE_OPENAT2", False)
                assert answer(q, flags) == kernel, (q, flags)
        os.close(r)
    finally:
        shutil.rmtree(base)


# --- property test: random hostile archives through the extractor ----------------------

member_name = st.one_of(rel_path, rel_path.map(lambda p: "/" + p), st.sampled_from(NAMES))
member = st.tuples(
    st.sampled_from(["dir", "file", "sym", "hard", "fifo", "chr", "whiteout", "opaque"]),
    member_name,
    st.one_of(link_target, rel_path),
)


def _archive(members, sentinel: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, target in members:
            name = _fill(name, sentinel)
            target = _fill(target, sentinel)
            if kind == "whiteout":
                name, kind = name.rstrip("/") + "/.wh." + target.rpartition("/")[2], "file"
            elif kind == "opaque":
                name, kind = name.rstrip("/") + "/.wh..wh..opq", "file"
            ti = tarfile.TarInfo(name)
            ti.type = {
                "dir": tarfile.DIRTYPE,
                "file": tarfile.REGTYPE,
                "sym": tarfile.SYMTYPE,
                "hard": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
                "chr": tarfile.CHRTYPE,
            }[kind]
            ti.linkname = target if kind in ("sym", "hard") else ""
            ti.devmajor, ti.devminor = (1, 3)
            data = name.encode("utf-8", "surrogateescape") if kind == "file" else b""
            ti.size = len(data)
            ti.mode = 0o755 if kind == "dir" else 0o644
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    layers=st.lists(st.lists(member, max_size=12), min_size=1, max_size=3),
    whiteouts=st.booleans(),
    rootless=st.booleans(),
)
def test_property_extract_never_outside(mode, layers, whiteouts, rootless):
    """Random archives (links to the sentinel, `..`, loops, hard links, whiteouts) unpacked
    one after another: each either unpacks or fails with a RuripyError naming a member, and
    nothing beside the root changes."""
    base = tempfile.mkdtemp(prefix="extract-prop.")
    try:
        root = os.path.join(base, "root")
        sentinel = os.path.join(base, "sentinel")
        os.mkdir(sentinel)
        os.mkdir(os.path.join(sentinel, "x"))
        with open(os.path.join(sentinel, "x", "file"), "w") as f:
            f.write("host\n")
        before = snapshot(sentinel)
        for members in layers:
            blob = _archive(members, sentinel)
            try:
                extract_mod.extract(
                    io.BytesIO(blob), root, rootless=rootless, whiteouts=whiteouts, label="p.tar"
                )
            except RuripyError as e:
                assert str(e).startswith("p.tar: member "), e
        assert snapshot(sentinel) == before
        with open(os.path.join(sentinel, "x", "file")) as f:
            assert f.read() == "host\n"
        assert sorted(os.listdir(base)) == ["root", "sentinel"]
        # nothing in the root is a hard link to a file outside it
        victim = os.lstat(os.path.join(sentinel, "x", "file"))
        outside = {(victim.st_dev, victim.st_ino)}
        for dirpath, _, filenames in os.walk(root):
            for n in filenames:
                s = os.lstat(os.path.join(dirpath, n))
                assert (s.st_dev, s.st_ino) not in outside
                if stat.S_ISCHR(s.st_mode):
                    assert not rootless and s.st_rdev == os.makedev(1, 3)
    finally:
        shutil.rmtree(base)
