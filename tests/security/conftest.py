"""Fixtures for the adversarial container tests (security.md section 8).

* `sec_probe`: tests/probes/sec_probe.c compiled statically with gcc, so it runs inside a
  busybox rootfs; the tests skip, naming the reason, when gcc or the static libc is missing.
* `mode_runner(mode)`: one CLI runner per mode ("rootless", "privileged") for the whole
  session, each with its own storage root, so containers can be shared between tests.
* `sbox`: a container "box" made from a busybox rootfs with the probe at /bin/sec_probe
  (and a setuid-root copy at /bin/suid_probe), shared by every test of the session for
  each mode (the tests only read from it, or start and stop it). It also holds trap
  modules and programs (P0-E9) that mark /TRAPPED if ruripy ever imports or runs them.
* `_started_boxes(mode)`: "ebox", the same, started once for the exec checks.
* `scratch(mode)`: a container tests may change in the store (and restore).
* `make_box(runner, name, customize)` makes a private one when a test needs a hostile
  rootfs.

Containers are imported from tarballs whose members belong to uid 0, the way images come.
"""

import marshal
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest
from conftest import TEST_ROOT, TEST_USER, Runner, busybox_rootfs, kill_leftovers

PROBES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "probes")
MODES = ("rootless", "privileged")
ENTRY = "import sys; from ruripy.__main__ import main; sys.exit(main())"  # the console script
SCRATCH = "/dev/shm/ruripy-sec-tests" if os.path.isdir("/dev/shm") else TEST_ROOT


def _tmpdir(
    prefix: str, owner: pwd.struct_passwd | None = None, mode: int = 0o755, base: str = TEST_ROOT
) -> str:
    os.makedirs(base, exist_ok=True)
    os.chmod(base, 0o755)
    d = tempfile.mkdtemp(prefix=prefix, dir=base)
    os.chmod(d, mode)
    if owner is not None:
        os.chown(d, owner.pw_uid, owner.pw_gid)
    return d


def _kill_init(state_path: str) -> None:
    """SIGKILL the init a state file names, if it is still that process."""
    try:
        with open(state_path, "rb") as f:
            state = marshal.load(f)
        with open(f"/proc/{state['pid']}/stat", "rb") as f:
            data = f.read()
        if int(data[data.rindex(b")") + 2 :].split()[19]) == state["starttime"]:
            os.kill(state["pid"], 9)
    except (OSError, EOFError, ValueError, KeyError, TypeError):
        pass


def _rm(path: str) -> None:
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


@pytest.fixture(scope="session")
def sec_probe():
    """The static probe binary (path on the host)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("gcc is not installed: the container probes are compiled at test time")
    d = _tmpdir("sec-probe.")
    out = os.path.join(d, "sec_probe")
    r = subprocess.run(
        [gcc, "-O1", "-Wall", "-static", "-o", out, os.path.join(PROBES, "sec_probe.c")],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(
            "cannot build a static probe (is libc6-dev with libc.a installed?): "
            + r.stderr.strip()[-400:]
        )
    os.chmod(out, 0o755)
    yield out
    _rm(d)


@pytest.fixture(scope="session")
def _runners(src_copy):
    made: dict[str, Runner] = {}
    homes: list[str] = []

    def get(mode: str) -> Runner:
        if mode in made:
            return made[mode]
        if os.geteuid() != 0:
            pytest.skip("the security tests start as root (and switch to the test user)")
        if mode == "privileged":
            home = _tmpdir("sec-home-root.", mode=0o700)
            made[mode] = Runner(src_copy, home, None)
        else:
            try:
                user = pwd.getpwnam(TEST_USER)
            except KeyError:
                pytest.skip(f"unprivileged test user {TEST_USER} is missing: run tests/setup.sh")
            parent = _tmpdir("sec-home-user.", owner=user)
            home = os.path.join(parent, "home")
            os.mkdir(home, 0o700)
            os.chown(home, user.pw_uid, user.pw_gid)
            homes.append(parent)
            made[mode] = Runner(src_copy, home, user)
        homes.append(made[mode].home)
        return made[mode]

    yield get
    for r in made.values():  # stop whatever a failed test left running
        for f in os.listdir(r.host_path("state")) if os.path.isdir(r.host_path("state")) else ():
            if f.endswith(".rec"):
                r("stop", "-t", "1", f[:-4], timeout=30)
                _kill_init(r.host_path("state", f))  # if stop could not
        kill_leftovers(r.home)  # containers whose state file a test removed
    for h in homes:  # thousands of small files: let rm finish after the session
        subprocess.Popen(
            ["rm", "-rf", "--one-file-system", h],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


@pytest.fixture(scope="session")
def mode_runner(_runners):
    """mode_runner("rootless" | "privileged") -> the session's Runner for that mode."""
    return _runners


def make_rootfs(path: str, probe: str) -> str:
    busybox_rootfs(path)
    shutil.copy2(probe, os.path.join(path, "bin", "sec_probe"))
    shutil.copy2(probe, os.path.join(path, "bin", "suid_probe"))
    os.chmod(os.path.join(path, "bin", "suid_probe"), 0o4755)  # setuid root (P0-C3)
    return path


class Box:
    """A container of one runner, with helpers to run the CLI against it."""

    def __init__(self, runner: Runner, name: str) -> None:
        self.runner = runner
        self.name = name
        self.mode = "rootless" if runner.rootless else "privileged"

    @property
    def rootless(self) -> bool:
        return self.runner.rootless

    @property
    def rootfs(self) -> str:
        return self.runner.host_path("containers", self.name, "rootfs")

    @property
    def root_uid(self) -> int:
        """Host uid of the container's root."""
        return self.runner.user.pw_uid if self.rootless else 0

    def __call__(self, command: str, *args: str, **kw) -> subprocess.CompletedProcess:
        """`ruripy COMMAND NAME ARGS...`."""
        return self.runner(command, self.name, *args, **kw)

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.runner("run", self.name, *args, **kw)

    def entry(self, command: str, *args: str) -> subprocess.CompletedProcess:
        """`ruripy COMMAND NAME ARGS...` the way the installed `ruripy` script starts it
        (no runpy, so fewer modules are imported at start-up than with -m)."""
        argv = self.runner.argv(command, self.name, *args)
        i = argv.index("-m")
        argv[i : i + 2] = ["-c", ENTRY]
        return subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120
        )

    def probe(self, *checks: str, opts=(), command: str = "run", **kw) -> dict[str, str]:
        """Run the probe in the container (run or exec) and return {check: result}."""
        r = self.runner(command, self.name, *opts, "--", "/bin/sec_probe", *checks, **kw)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        return parse_probe(r.stdout)

    def state(self, wait: float = 10) -> dict:
        """The state of the running container, once its init is alive (waits for a `run`
        to write it; a stale file left by an earlier run does not count)."""
        path = self.runner.host_path("state", self.name + ".rec")
        deadline = time.monotonic() + wait
        while True:
            try:
                with open(path, "rb") as f:
                    state = marshal.load(f)
                with open(f"/proc/{state['pid']}/stat", "rb") as f:
                    data = f.read()
                if int(data[data.rindex(b")") + 2 :].split()[19]) == state["starttime"]:
                    return state
            except (OSError, EOFError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"container {self.name} did not come up")
            time.sleep(0.02)

    def start(self) -> None:
        r = self.runner("start", self.name)
        assert r.returncode == 0, r.stderr

    def stop(self) -> None:
        self.runner("stop", "-t", "2", self.name, timeout=60)


def parse_probe(out: str) -> dict[str, str]:
    results = {}
    for line in out.splitlines():
        check, _, result = line.rpartition(" ")
        if check:
            results[check] = result
    return results


def import_box(runner: Runner, name: str, rootfs: str) -> Box:
    """Import the folder `rootfs` as container `name` through a tarball owned by uid 0."""
    tar = rootfs.rstrip("/") + ".tar"
    subprocess.run(
        ["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", rootfs, "-cf", tar, "."],
        check=True,
    )
    os.chmod(tar, 0o644)
    r = runner("import", name, tar)
    assert r.returncode == 0, r.stderr
    os.unlink(tar)
    return Box(runner, name)


@pytest.fixture(scope="session")
def make_box(sec_probe):
    """make_box(runner, name, customize=None) -> Box: a private container for one test.

    `customize(path)` may change the busybox rootfs (with the probe) before it is imported.
    """
    dirs: list[str] = []

    def make(runner: Runner, name: str, customize=None) -> Box:
        # Sources on tmpfs when there is one: thousands of small files come and go fast.
        d = _tmpdir(f"sec-rootfs-{name}.", base=SCRATCH)
        dirs.append(d)
        path = make_rootfs(os.path.join(d, "rootfs"), sec_probe)
        if customize is not None:
            customize(path)
        box = import_box(runner, name, path)
        _rm(d)
        return box

    yield make
    for d in dirs:
        _rm(d)


TRAP = 'open("/TRAPPED", "a").write(__name__ + "\\n")\n'


def _module_names(folder: str) -> set[str]:
    names = set()
    for entry in os.listdir(folder):
        if entry.endswith(".py"):
            names.add(entry[:-3])
        elif ".cpython-" in entry and entry.endswith(".so"):
            names.add(entry.split(".")[0])
        elif os.path.isfile(os.path.join(folder, entry, "__init__.py")):
            names.add(entry)
    return names


def plant_traps(rootfs: str, src: str) -> int:
    """Trap modules wherever the tool could look for a module once inside the rootfs: the
    same paths as the host's sys.path and package folders, and trap programs that
    ctypes.util and friends would run. Each writes /TRAPPED when imported or run."""
    count = 0

    def trap(path: str) -> None:
        nonlocal count
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(TRAP)
        count += 1

    stdlib = os.path.dirname(os.__file__)
    dynload = os.path.join(stdlib, "lib-dynload")
    # Every stdlib name in the standard folder, and again in the first sys.path entry that
    # exists inside (PYTHONPATH, the source copy): that one would be searched first.
    for folder in (stdlib, src):
        for name in _module_names(stdlib) | _module_names(dynload):
            trap(os.path.join(rootfs, folder.lstrip("/"), name + ".py"))
    for pkg in ("encodings", "ctypes", "json", "importlib", "collections", "email"):
        for name in _module_names(os.path.join(stdlib, pkg)) | {"__init__"}:
            trap(os.path.join(rootfs, stdlib.lstrip("/"), pkg, name + ".py"))
    # ruripy's own modules, where a late relative import would look for them.
    for base in (src, os.getcwd()):
        pkg = os.path.join(base, "ruripy")
        if not os.path.isdir(pkg):
            continue
        for dirpath, _, files in os.walk(pkg):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), "/")
                    trap(os.path.join(rootfs, rel))
    for prog in ("sbin/ldconfig", "usr/bin/gcc", "usr/bin/cc", "usr/bin/objdump", "usr/bin/ld"):
        path = os.path.join(rootfs, prog)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("#!/bin/sh\necho $0 >> /TRAPPED\n")
        os.chmod(path, 0o755)
    return count


@pytest.fixture(scope="session")
def _shared_boxes(mode_runner, make_box, src_copy):
    made: dict[str, Box] = {}

    def get(mode: str) -> Box:
        if mode not in made:
            made[mode] = make_box(mode_runner(mode), "box", lambda p: plant_traps(p, src_copy))
        return made[mode]

    return get


@pytest.fixture(scope="session")
def _started_boxes(mode_runner, make_box, src_copy):
    """Per mode, a container "ebox" (like "box") started once for the exec checks."""
    made: dict[str, Box] = {}

    def get(mode: str) -> Box:
        if mode not in made:
            box = make_box(mode_runner(mode), "ebox", lambda p: plant_traps(p, src_copy))
            box.start()
            made[mode] = box
        return made[mode]

    yield get
    for box in made.values():
        box.stop()


@pytest.fixture(scope="session")
def scratch(mode_runner, make_box):
    """scratch(mode) -> a container "scratch" that tests may change (and must restore)."""
    made: dict[str, Box] = {}

    def get(mode: str) -> Box:
        if mode not in made:
            made[mode] = make_box(mode_runner(mode), "scratch")
        return made[mode]

    return get


@pytest.fixture(params=MODES)
def sbox(request, _shared_boxes) -> Box:
    """The shared container "box" (busybox + /bin/sec_probe), once per mode."""
    return _shared_boxes(request.param)


@pytest.fixture
def pbox(_shared_boxes) -> Box:
    """The shared privileged container "box"."""
    return _shared_boxes("privileged")


@pytest.fixture
def rbox(_shared_boxes) -> Box:
    """The shared rootless container "box"."""
    return _shared_boxes("rootless")


def descendants(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def host_pid_of(container_pid_ns: int, cmdline_part: bytes) -> int | None:
    """Host pid of a process in the pid namespace `container_pid_ns` whose command line
    contains `cmdline_part` (for checks from the host side). ruripy's own pid 1, whose
    command line holds the container's command too, is never the answer."""
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            if os.stat(f"/proc/{e}/ns/pid").st_ino != container_pid_ns:
                continue
            with open(f"/proc/{e}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if any(a == b"ruripy" or a.endswith(b"/ruripy") for a in argv[:3]):
                continue
            if cmdline_part in b"\0".join(argv):
                return int(e)
        except OSError:
            continue
    return None
