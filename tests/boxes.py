"""Helpers for the container tests: a busybox image pulled from a tarball, containers made
from it, and small views of the store and of running containers (imported by
test_containers.py, test_lifecycle.py, test_exec.py, test_run.py and test_everyday.py)."""

import hashlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest
from conftest import busybox_rootfs


@pytest.fixture
def bb_tar(workdir):
    """A busybox rootfs as a plain tarball, readable by the test user."""
    root = busybox_rootfs(os.path.join(workdir, "bbroot"))
    tar = os.path.join(workdir, "busybox.tar")
    subprocess.run(["tar", "-C", root, "--numeric-owner", "-cf", tar, "."], check=True)
    os.chmod(tar, 0o644)
    return tar


@pytest.fixture
def image(runner, bb_tar):
    """The busybox image pulled into the runner's store; its name."""
    return pull(runner, bb_tar)


@pytest.fixture
def obox(runner, image):
    """Overlay container 'box' made from the busybox image, for the parametrised runner."""
    r = runner("create", "box", image)
    assert r.returncode == 0, r.stderr
    return runner


def pull(r, tar: str) -> str:
    p = r("pull", "--quiet", tar)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p


def fails(p: subprocess.CompletedProcess, *words: str, status: int = 125) -> str:
    """Assert a ruripy failure: the status, one-line message(s) naming `words`, no traceback."""
    assert p.returncode == status, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in p.stderr, (w, p.stderr)
    return p.stderr


def listing(r) -> dict:
    return {c["name"]: c for c in json.loads(ok(r("list", "--json")).stdout)}


def ps(r) -> dict:
    return {c["name"]: c for c in json.loads(ok(r("ps", "--json")).stdout)}


def image_dir(r, name: str) -> str:
    for i in os.listdir(r.host_path("images")):
        try:
            with open(r.host_path("images", i, "image.json")) as f:
                if json.load(f).get("name") == name:
                    return r.host_path("images", i)
        except OSError:
            continue
    raise AssertionError(f"no image {name} in {r.host_path('images')}")


def tree_digest(path: str) -> str:
    """Names, types, modes, owners and contents of every entry below `path`."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, path)}:{st.st_mode}:{st.st_uid}:{st.st_gid}\n".encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode())
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def disk_usage(path: str) -> int:
    """Bytes allocated below `path`, hard links once (like du)."""
    seen = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, n))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def wait_for(cond, timeout: float = 10, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    return data[data.rindex(b")") + 2 : data.rindex(b")") + 3] not in (b"Z", b"X")


def upper(r, name: str, *parts: str) -> str:
    return r.host_path("containers", name, "upper", *parts)


def python_as(r, code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run Python `code` (with `args` in sys.argv[1:]) as the runner's user, with its env."""
    argv = [sys.executable, "-c", code, *args]
    envargs = [f"{k}={v}" for k, v in r.env().items()]
    prefix = ["runuser", "-u", r.user.pw_name, "--"] if r.user else []
    return subprocess.run(
        [*prefix, "env", "-i", *envargs, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def in_pty(argv: list[str], script: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Run argv on a new terminal (as from a user's terminal), typing `script` into it;
    (exit status, everything it wrote)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    out = b""
    os.write(fd, script)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:  # it hangs: end it, and say so
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(fd)
            raise AssertionError(f"{argv} still ran after {timeout} s; it wrote {out!r}")
        if not select.select([fd], [], [], left)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every holder of the terminal has gone
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out
