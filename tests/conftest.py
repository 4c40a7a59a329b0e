"""Shared fixtures: the source under test, the unprivileged test user, busybox rootfs, runners.

Container tests run the real CLI in a subprocess: as root (`privileged`) or as the
unprivileged user `ruripy-test` with a 65536-id range (`rootless`), each with its own
storage root. tests/setup.sh creates the user and installs what the tests need.
"""

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

TEST_USER = os.environ.get("RURIPY_TEST_USER", "ruripy-test")
BUSYBOX = "/bin/busybox"
# Every test folder lives here: readable by the test user, removed at the end.
TEST_ROOT = "/tmp/ruripy-tests"


def _rm_tree(path: str) -> None:
    """Remove a test folder, also when a rootless run left files owned by subuids."""
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


def kill_leftovers(home: str) -> None:
    """SIGKILL every process still working for storage root `home` (a container a test
    started and did not stop), so no test leaves containers running behind it."""
    want = f"RURIPY_HOME={home}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if want in env:
            try:
                os.kill(int(entry), 9)
            except OSError:
                pass


@pytest.fixture(scope="session")
def src_copy():
    """A copy of the package in a world-readable folder, so the test user can import it."""
    os.makedirs(TEST_ROOT, exist_ok=True)
    os.chmod(TEST_ROOT, 0o755)
    d = tempfile.mkdtemp(prefix="src.", dir=TEST_ROOT)
    os.chmod(d, 0o755)
    shutil.copytree(
        os.path.join(REPO, "ruripy"),
        os.path.join(d, "ruripy"),
        ignore=shutil.ignore_patterns("__pycache__", "catalog"),
    )
    shutil.copytree(os.path.join(REPO, "rootfs-images"), os.path.join(d, "ruripy", "catalog"))
    # Compiled once here: the test user cannot write __pycache__ and every run would recompile.
    subprocess.run([sys.executable, "-m", "compileall", "-q", d], check=True)
    subprocess.run(["chmod", "-R", "a+rX", d], check=True)
    yield d
    _rm_tree(d)


@pytest.fixture(scope="session")
def test_user():
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        pytest.skip(f"unprivileged test user {TEST_USER} is missing: run tests/setup.sh as root")
    if os.geteuid() != 0:
        pytest.skip("these tests switch to the unprivileged test user and need to start as root")
    return pw


def _chown_tree(path: str, uid: int, gid: int) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            os.chown(os.path.join(dirpath, n), uid, gid, follow_symlinks=False)


@pytest.fixture
def workdir(request):
    """A fresh folder under /tmp/ruripy-tests that the test user can read and write."""
    os.makedirs(TEST_ROOT, exist_ok=True)
    os.chmod(TEST_ROOT, 0o755)
    d = tempfile.mkdtemp(prefix=request.node.name[:40] + ".", dir=TEST_ROOT)
    os.chmod(d, 0o755)
    try:
        pw = pwd.getpwnam(TEST_USER)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    except KeyError:
        pass
    yield d
    _rm_tree(d)


def busybox_rootfs(path: str, owner: tuple[int, int] | None = None) -> str:
    """Build a tiny rootfs at `path` from the host's static busybox."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (apt-get install busybox-static)")
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "home", "usr/bin", "var"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run(
        [BUSYBOX, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for a in applets:
        link = os.path.join(path, "bin", a)
        if a != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write(
            "root:x:0:0:root:/root:/bin/sh\n"
            "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
            "user:x:1000:1000:user:/home/user:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        )
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\ndaemon:x:1:\ntty:x:5:\nusers:x:100:user\nuser:x:1000:\n")
    os.makedirs(os.path.join(path, "home", "user"), exist_ok=True)
    if owner:
        _chown_tree(path, *owner)
    return path


@pytest.fixture(name="busybox_rootfs")
def busybox_rootfs_fixture():
    return busybox_rootfs


NO_USERNS_PROFILE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "probes", "no-userns.json"
)


def without_userns_argv(src: str) -> list[str]:
    """A prefix that runs a command where unshare(2) and clone(2) with CLONE_NEWUSER fail
    (tests/probes/no-userns.json), as the kernel of Termux does."""
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); "
        "from ruripy.sandbox import seccomp; seccomp.prepare(sys.argv[2]).load(); "
        "os.execvp(sys.argv[3], sys.argv[3:])"
    )
    return [sys.executable, "-c", code, src, NO_USERNS_PROFILE]


class Runner:
    """Runs the real `ruripy` CLI as one user with its own storage root."""

    def __init__(self, src: str, home: str, user: pwd.struct_passwd | None) -> None:
        self.src = src
        self.home = home
        self.user = user
        self.rootless = user is not None

    def env(self, extra: dict | None = None) -> dict:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": self.user.pw_dir if self.user else "/root",
            "LANG": "C.UTF-8",
            "PYTHONPATH": self.src,
            "RURIPY_HOME": self.home,
        }
        if extra:
            env.update(extra)
        return env

    def argv(self, *args: str, env: dict | None = None) -> list[str]:
        base = [sys.executable, "-m", "ruripy", *args]
        envargs = [f"{k}={v}" for k, v in self.env(env).items()]
        if self.user:
            return ["runuser", "-u", self.user.pw_name, "--", "env", "-i", *envargs, *base]
        return ["env", "-i", *envargs, *base]

    def __call__(
        self, *args: str, input: str | bytes | None = None, timeout: float = 120, env=None
    ) -> subprocess.CompletedProcess:
        text = not isinstance(input, bytes)
        return subprocess.run(
            self.argv(*args, env=env),
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
            stdin=subprocess.DEVNULL if input is None else None,
        )

    def without_userns(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the CLI as on a host without user namespaces (Termux): a seccomp filter on
        the caller refuses new user namespaces to it and everything it starts."""
        return subprocess.run(
            without_userns_argv(self.src) + self.argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str, env=None, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args, env=env), **kw)

    def host_path(self, *parts: str) -> str:
        return os.path.join(self.home, *parts)


@pytest.fixture
def privileged(src_copy, workdir):
    if os.geteuid() != 0:
        pytest.skip("privileged tests need root")
    # Not under workdir: that belongs to the test user, and root refuses profiles below
    # folders another user can change (security.md P0-N7).
    os.makedirs(TEST_ROOT, exist_ok=True)
    home = tempfile.mkdtemp(prefix="home-root.", dir=TEST_ROOT)
    yield Runner(src_copy, home, None)
    kill_leftovers(home)
    _rm_tree(home)


@pytest.fixture
def rootless(src_copy, workdir, test_user):
    home = os.path.join(workdir, "home-user")
    os.mkdir(home, 0o700)
    os.chown(home, test_user.pw_uid, test_user.pw_gid)
    yield Runner(src_copy, home, test_user)
    kill_leftovers(home)


@pytest.fixture(params=["rootless", "privileged"])
def runner(request):
    """Each test using it runs twice: as the unprivileged user and as root."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def rootfs_dir(workdir, busybox_rootfs):
    """A busybox rootfs folder, readable by the test user (owned by it)."""
    path = os.path.join(workdir, "rootfs")
    try:
        pw = pwd.getpwnam(TEST_USER)
        owner = (pw.pw_uid, pw.pw_gid)
    except KeyError:
        owner = None
    return busybox_rootfs(path, owner)


@pytest.fixture
def box(runner, rootfs_dir):
    """A container named 'box' imported from the busybox rootfs, for the parametrised runner."""
    r = runner("import", "box", rootfs_dir)
    assert r.returncode == 0, r.stderr
    return runner


def mode_of(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)
