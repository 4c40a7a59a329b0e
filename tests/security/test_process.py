"""Capabilities and process hygiene: security.md 8.3 P0-C1..C3, P0-E5..E9, P0-E11 and
8.6 P1-E10, P1-E12, P1-T1.

Every check is made after `run` (a fresh container) and after `exec` (joining a started
one), rootless and privileged, on what the container's processes really hold: their
/proc/PID/status, their fds seen from the host, the errno names the static probe prints.
"""

import errno
import fcntl
import hashlib
import os
import pty
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
import tty

import pytest

from .conftest import Box, descendants, host_pid_of, parse_probe

# Docker's default 14 (security.md 3.4), by number (linux/capability.h), not from ruripy.
CAP = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SETPCAP": 8,
    "NET_BIND_SERVICE": 10,
    "NET_RAW": 13,
    "SYS_CHROOT": 18,
    "SYS_ADMIN": 21,
    "MKNOD": 27,
    "AUDIT_WRITE": 29,
    "SETFCAP": 31,
}
DOCKER_14 = sum(1 << n for name, n in CAP.items() if name != "SYS_ADMIN")


def expected_caps(box: Box) -> int:
    """The 14 rootless; without MKNOD in privileged mode (no device cgroup)."""
    return DOCKER_14 if box.rootless else DOCKER_14 & ~(1 << CAP["MKNOD"])


def status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def run_and_exec(ebox: Box, *argv: str, opts=(), **kw) -> dict[str, subprocess.CompletedProcess]:
    """The same command through `run` (a fresh container: the stopped sibling "box" is not
    used, ebox runs, so run would join) and through `exec`."""
    fresh = ebox.runner("run", "box", *opts, "--", *argv, **kw)
    joined = ebox.runner("exec", ebox.name, *opts, "--", *argv, **kw)
    return {"run": fresh, "exec": joined}


@pytest.fixture
def both(sbox, _started_boxes):
    """(the shared stopped container "box", the started "ebox") of one mode."""
    return sbox, _started_boxes(sbox.mode)


# -- P0-C1 --------------------------------------------------------------------------------------


def test_P0_C1_capabilities_after_run_and_exec(both):
    box, ebox = both
    want = f"{expected_caps(box):016x}"
    for how, r in run_and_exec(ebox, "cat", "/proc/self/status").items():
        assert r.returncode == 0, (how, r.stderr)
        s = status(r.stdout)
        got = {k: s[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
        assert got == {
            "CapInh": "0" * 16,
            "CapPrm": want,
            "CapEff": want,
            "CapBnd": want,
            "CapAmb": "0" * 16,
        }, how
        assert not int(s["CapBnd"], 16) & (1 << CAP["SYS_ADMIN"])
    # A non-root user inside keeps no capability at all, only the bounding set.
    for how, r in run_and_exec(ebox, "cat", "/proc/self/status", opts=("--user", "user")).items():
        s = status(r.stdout)
        assert (s["CapInh"], s["CapPrm"], s["CapEff"], s["CapAmb"]) == ("0" * 16,) * 4, how
        assert s["CapBnd"] == want


# -- P0-C2 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seccomp", ["default", "off"])
def test_P0_C2_mknod_block_device_fails(pbox, seccomp):
    got = pbox.probe("mknod:/tmp/sda:b:8:0", "mknod:/tmp/mem:c:1:1", opts=("--seccomp", seccomp))
    assert got == {"mknod:/tmp/sda:b:8:0": "EPERM", "mknod:/tmp/mem:c:1:1": "EPERM"}
    assert not os.path.lexists(os.path.join(pbox.rootfs, "tmp", "sda"))


def test_P0_C2_mknod_fails_in_exec(_started_boxes):
    got = _started_boxes("privileged").probe("mknod:/tmp/sda:b:8:0", command="exec")
    assert got == {"mknod:/tmp/sda:b:8:0": "EPERM"}


# -- P0-C3 --------------------------------------------------------------------------------------


def test_P0_C3_no_new_privs_after_run_and_exec(both):
    box, ebox = both
    for how, r in run_and_exec(ebox, "cat", "/proc/self/status").items():
        assert status(r.stdout)["NoNewPrivs"] == "1", how
    # A setuid-root program run by an ordinary user does not become root.
    r = box.run("--user", "user", "--", "/bin/suid_probe", "ids")
    assert parse_probe(r.stdout) == {"ids": "r=1000,e=1000"}, r.stderr
    r = ebox("exec", "--user", "user", "--", "/bin/suid_probe", "ids")
    assert parse_probe(r.stdout) == {"ids": "r=1000,e=1000"}


def test_P0_C3_setuid_works_when_allowed(sbox):
    """Control for the test above: with --allow-new-privs the same program gets euid 0
    (rootless, the seccomp filter needs no_new_privs, so the filter is off here too)."""
    r = sbox.run(
        "--allow-new-privs", "--seccomp", "off", "--user", "user", "--", "/bin/suid_probe", "ids"
    )
    assert parse_probe(r.stdout) == {"ids": "r=1000,e=0"}, r.stderr


# -- P0-E5 --------------------------------------------------------------------------------------

FD_TARGET = re.compile(r"^(/dev/null|pipe:\[\d+\]|socket:\[\d+\]|/dev/pts/\d+)$")


def fds_of(pid: int) -> dict[int, str]:
    return {int(n): os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}


def assert_clean_fds(pid: int, what: str, status_pipe: bool = False) -> None:
    """Only fds 0-2 (each a pty, pipe, socket or /dev/null). With `status_pipe` (the init
    of a `run`) one more: the pipe on which it tells the `run` that started it, its
    parent outside the container and the holder of the other end, the command's status."""
    fds = fds_of(pid)
    extra = sorted(set(fds) - {0, 1, 2})
    if status_pipe:
        assert len(extra) == 1 and fds[extra[0]].startswith("pipe:"), (what, fds)
        with open(f"/proc/{pid}/stat") as f:
            parent = int(f.read().rsplit(")", 1)[1].split()[1])
        assert fds[extra[0]] in fds_of(parent).values(), (what, fds, fds_of(parent))
        del fds[extra[0]]
    assert sorted(fds) == [0, 1, 2], (what, fds)
    for n, target in fds.items():
        assert FD_TARGET.match(target), (what, n, target)


def test_P0_E5_no_stray_fds(both):
    box, ebox = both
    state = ebox.state()
    init = state["pid"]
    assert_clean_fds(init, "init of a started container")
    # The command of an exec and of a run, while they wait for input.
    for how in ("exec", "run"):
        target = ebox if how == "exec" else box
        p = target.runner.popen(
            how,
            target.name,
            "sh",
            "-c",
            "echo ready; read x",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert p.stdout.readline() == "ready\n", p.stderr.read()
            ns = (ebox.state() if how == "exec" else box.state())["ns"]["pid"]
            pid = host_pid_of(ns, b"echo ready; read x")
            assert pid is not None
            assert_clean_fds(pid, f"command of {how}")
            if how == "run":
                assert_clean_fds(box.state()["pid"], "init of a run", status_pipe=True)
        finally:
            p.communicate("x\n", timeout=30)
        assert p.returncode == 0


# -- P0-E6 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["run", "exec"])
def test_P0_E6_working_directory_stays_inside(both, workdir, how):
    box, ebox = both
    target = box if how == "run" else ebox
    sentinel = os.path.join(workdir, "host-sentinel")
    open(sentinel, "w").close()
    cases = {
        "/proc/self/fd/3": "No such file or directory",
        "/proc/self/fd/7": "No such file or directory",
        "/proc/1/cwd": "Permission denied",
    }
    for wd, why in cases.items():
        r = target.runner(how, target.name, "--workdir", wd, "--", "pwd", "-P")
        assert (r.returncode, r.stdout) == (125, ""), (wd, r.stdout)
        assert r.stderr == f"ruripy: cannot use working directory {wd}: {why}.\n"
    r = target.runner(how, target.name, "--workdir", "../../..", "--", "pwd")
    assert r.returncode == 125
    assert "is not an absolute path" in r.stderr
    # Folders that exist inside resolve inside, whatever the way to them. An exec takes
    # the working folder in the joining process, which has no pid in the container's pid
    # namespace: /proc/self names nothing there, and such a path is refused.
    for wd in ("/proc/self/cwd", "/proc/self/root", "/../../..", "/tmp/../.."):
        r = target.runner(how, target.name, "--workdir", wd, "--", "pwd", "-P")
        if how == "exec" and wd.startswith("/proc/self/"):
            assert (r.returncode, r.stdout) == (125, ""), (wd, r.stdout)
            why = "No such file or directory"
            assert r.stderr == f"ruripy: cannot use working directory {wd}: {why}.\n"
            continue
        assert (r.returncode, r.stdout) == (0, "/\n"), (wd, r.stderr)
    rel = "../" * 10 + sentinel.lstrip("/")
    got = target.probe(f"open:{rel}:r", opts=("--workdir", "/tmp"), command=how)
    assert got == {f"open:{rel}:r": "ENOENT"}


# -- P0-E7 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["run", "exec"])
def test_P0_E7_non_dumpable_until_exec(both, how):
    box, ebox = both
    target = box if how == "run" else ebox
    p = target.runner.popen(
        how,
        target.name,
        "--",
        "true",
        env={"RURIPY_TEST_PAUSE": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    m = None
    try:
        line = p.stderr.readline()
        m = re.fullmatch(r"ruripy-test-pause pid=(\d+) dumpable=(\d+)\n", line)
        assert m, line
        pid, dumpable = m.groups()
        assert dumpable == "0"
        state = target.state()  # a run writes it once its init is up (maybe after this line)
        if how == "exec":
            # The joining process is inside the container's other namespaces but has no
            # pid in its pid namespace: no process of the container can even name it.
            ns = {n: os.stat(f"/proc/{pid}/ns/{n}").st_ino for n in ("mnt", "pid")}
            assert ns["mnt"] == state["ns"]["mnt"]
            assert ns["pid"] != state["ns"]["pid"]
            got = target.probe(f"procopen:{pid}", f"kill:{pid}:18", command="exec")
            assert got == {
                f"procopen:{pid}": "exe=ENOENT,mem=ENOENT,fd/0=ENOENT",
                f"kill:{pid}:18": "ESRCH",
            }
        else:
            # Another process of the container (root, the default capabilities) cannot
            # reach into the paused ruripy process, then lets it go on.
            got = target.probe(f"procopen:{pid}", f"kill:{pid}:18", command="exec")
            assert got == {
                f"procopen:{pid}": "exe=EACCES,mem=EACCES,fd/0=EACCES",
                f"kill:{pid}:18": "ok",
            }
    finally:
        if how == "exec" and m:
            # Out of the container's reach: from here, the joining process, then runuser
            # above it (which stops itself with its child).
            for who in (int(m.group(1)), p.pid):
                try:
                    os.kill(who, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err


# -- P0-E8 --------------------------------------------------------------------------------------


def _host_libs() -> list[str]:
    """The host interpreter's dynamic loader and libraries (so it can start in the rootfs)."""
    out = subprocess.run(["ldd", os.path.realpath(sys.executable)], capture_output=True, text=True)
    libs = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) > parts.index("=>") + 1:
            libs.append(parts[parts.index("=>") + 1])
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return [p for p in libs if p.startswith("/")]


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def e8box(mode_runner, make_box):
    """A rootfs where /bin/trap is `#!/proc/self/exe` and the host interpreter can start
    (its loader, libraries and encodings are copied in), as in CVE-2019-5736."""
    stdlib = os.path.dirname(os.__file__)

    def plant(path):
        for lib in _host_libs():
            dst = os.path.join(path, lib.lstrip("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.realpath(lib), dst)
        shutil.copytree(
            os.path.join(stdlib, "encodings"),
            os.path.join(path, stdlib.lstrip("/"), "encodings"),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        with open(os.path.join(path, "bin", "trap"), "w") as f:
            # Run as the interpreter until the watcher has seen it, then become a plain
            # `sleep`: the container lives on after the interpreter is gone (the moment of
            # the attack).
            f.write(
                "#!/proc/self/exe\nimport os, time\n"
                "for _ in range(400):\n"
                "    if os.path.exists('/tmp/watched'):\n"
                "        break\n"
                "    time.sleep(0.05)\n"
                "os.execv('/bin/busybox', ['sleep', '1'])\n"
            )
        os.chmod(os.path.join(path, "bin", "trap"), 0o755)

    return make_box(mode_runner("privileged"), "e8", plant)


def test_P0_E8_host_interpreter_cannot_be_overwritten(e8box):
    box = e8box
    interpreter = os.path.realpath(sys.executable)
    before = sha256(interpreter)
    # Through run (the trap is the container's first command) and through exec.
    for how in ("run", "exec"):
        if how == "exec":
            box.start()
        trap = box.runner.popen(
            how, box.name, "/bin/trap", stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            # While ruripy runs, its own executable is a sealed memfd copy.
            for _ in range(200):
                exe = os.readlink(f"/proc/{trap.pid}/exe")
                if exe.startswith("/memfd:"):
                    break
                time.sleep(0.05)
            assert exe == "/memfd:ruripy (deleted)", how
            box.state()  # the container is up
            watch = box("exec", "--", "/bin/sec_probe", "exewatch:20:/tmp/watched")
        finally:
            out, err = trap.communicate(timeout=30)
            if how == "exec":
                box.stop()
        assert (trap.returncode, watch.returncode) == (0, 0), (how, err, watch.stderr)
        got = parse_probe(watch.stdout)
        os.unlink(os.path.join(box.rootfs, "tmp", "watched"))
        exe, alive, reopen, write = got["exewatch:20:/tmp/watched"].split(",")
        assert exe.startswith("exe=/memfd:ruripy"), (how, got)
        assert alive == "alive=0"
        # The copy is sealed: it may be reopened, but never written.
        assert reopen in ("reopen=ok", "reopen=ETXTBSY", "reopen=EACCES"), got
        assert write in ("write=EPERM", "write=not-tried"), got
        assert reopen != "reopen=ok" or write == "write=EPERM"
    assert sha256(interpreter) == before


def test_P0_E8_sealed_copy_only_for_root(rbox):
    """Rootless runs keep the interpreter (the user cannot write the host's binary)."""
    p = rbox.runner.popen(
        "run", rbox.name, "sh", "-c", "echo up; read x", stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert p.stdout.readline() == "up\n"
        tool = rbox.state()["pid"]  # the init; its ancestors up to runuser are ruripy's
        exes = set()
        for pid in descendants(p.pid):
            try:
                exes.add(os.readlink(f"/proc/{pid}/exe"))
            except OSError:
                continue
        assert tool and os.path.realpath(sys.executable) in exes
        assert not [e for e in exes if e.startswith("/memfd:")]
    finally:
        p.communicate("x\n", timeout=30)


# -- P0-E9 --------------------------------------------------------------------------------------


def test_P0_E9_nothing_is_imported_inside(both):
    """The shared containers hold trap modules and programs (conftest.plant_traps): after
    run and exec, on success and on every error path, none of them ran."""
    box, ebox = both
    assert os.path.isfile(os.path.join(box.rootfs, "sbin", "ldconfig"))
    assert os.path.isfile(os.path.join(box.rootfs, os.__file__.lstrip("/")))
    cases = [
        (("true",), 0),
        (("--user", "user", "--workdir", "/tmp", "true"), 0),
        (("--env", "LANG=de_DE.ISO-8859-1", "--env", "PYTHONPATH=/x", "true"), 0),
        (("--tty", "true"), 0),
        (("no-such-program",), 127),
        (("/etc/passwd",), 126),
        (("--user", "nosuchuser", "true"), 125),
        (("--workdir", "/no/such/dir", "true"), 125),
    ]
    for args, code in cases:
        for target, how in ((box, "run"), (ebox, "exec")):
            r = target(how, *args)
            assert r.returncode == code, (how, args, r.stderr)
            if how == "run" or args == ("true",):  # as the installed script starts it
                r = target.entry(how, *args)
                assert r.returncode == code, (how, args, r.stderr)
    r = box.run("--seccomp", "off", "--net", "none", "true")
    assert r.returncode == 0, r.stderr
    # With RURIPY_DEBUG=1 too, an error raised inside the container stays one line and
    # imports nothing (the traps below; the traceback module is loaded only on the host).
    debug = {"RURIPY_DEBUG": "1"}
    for args in (("--workdir", "/no/such/dir", "true"), ("--user", "nosuchuser", "true")):
        for target, how in ((box, "run"), (ebox, "exec")):
            r = target(how, *args, env=debug)
            assert r.returncode == 125, (how, args, r.stderr)
            assert "Traceback" not in r.stderr and "ruripy: " in r.stderr, (how, r.stderr)
    for b in (box, ebox):
        for where in ("TRAPPED", "tmp/TRAPPED"):
            path = os.path.join(b.rootfs, where)
            assert not os.path.exists(path), open(path).read()


def test_P0_E9_sealed_imports_load_nothing(tmp_path, src_copy):
    """What a process runs once inside a container (after pivot_root, or after joining):
    process.seal_imports() makes any import fail, so a module missed in the imports made
    beforehand can never be loaded from the container's files at the host's paths."""
    marker = tmp_path / "LOADED"
    (tmp_path / "json.py").write_text(f"open({str(marker)!r}, 'w').write('yes')\n")
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "from ruripy.sandbox import process\n"
        "process.seal_imports()\n"
        "try:\n    import json\nexcept ImportError as e:\n    print('refused:', e)\n"
        "import os\n"  # already loaded: still there
        "print('os', os.getpid() > 0)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, src_copy, str(tmp_path)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("refused:"), r.stdout
    assert r.stdout.splitlines()[1] == "os True"
    assert not marker.exists()
    # The same planted module is loaded by a process that did not seal (the check is real).
    r = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import json",
         str(tmp_path)], capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert marker.read_text() == "yes"


# -- P0-E11 -------------------------------------------------------------------------------------


def test_P0_E11_inherited_stdio_is_never_chowned(both):
    box, ebox = both
    before = os.stat("/dev/null")
    runs = run_and_exec(ebox, "sh", "-c", "ls -l /proc/self/fd/0", opts=("-u", "user"))
    for how, r in runs.items():
        assert r.returncode == 0, (how, r.stderr)
    after = os.stat("/dev/null")
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (
        before.st_uid,
        before.st_gid,
        stat.S_IMODE(before.st_mode),
    )
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (0, 0, 0o666)


# -- P1-E10, P1-E12 -----------------------------------------------------------------------------


def test_P1_E10_signals_reset_before_exec(both):
    box, ebox = both
    for opts in ((), ("--user", "user")):
        for how, r in run_and_exec(ebox, "cat", "/proc/self/status", opts=opts).items():
            s = status(r.stdout)
            assert (s["SigIgn"], s["SigBlk"]) == ("0" * 16, "0" * 16), (how, opts)


def test_P1_E12_clean_environment(both):
    box, ebox = both
    runs = run_and_exec(ebox, "env", env={"SECRET_TOKEN": "x", "SSH_AUTH_SOCK": "/s"})
    for how, r in runs.items():
        names = {line.partition("=")[0] for line in r.stdout.splitlines()}
        assert r.returncode == 0, r.stderr
        assert not names & {"SECRET_TOKEN", "SSH_AUTH_SOCK", "RURIPY_HOME", "PYTHONPATH"}, how
        assert {"PATH", "HOME", "TERM"} <= names, how


# -- P1-T1 --------------------------------------------------------------------------------------


def _pty_session(argv: list[str]) -> tuple[int, bytes]:
    """Run argv as a session leader with a new pty as controlling terminal (a user's
    terminal); return (status, what is left unread in the terminal's input afterwards)."""
    master, slave = pty.openpty()
    tty.setraw(slave)  # no line editing: injected bytes are readable without a newline
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(master)
            os.login_tty(slave)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    output = b""
    while True:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            output += data
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    # What a program reading the terminal next (the user's shell) would get.
    fl = fcntl.fcntl(slave, fcntl.F_GETFL)
    fcntl.fcntl(slave, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    try:
        pending = os.read(slave, 4096)
    except BlockingIOError:
        pending = b""
    except OSError as e:
        pending = b"" if e.errno == errno.EIO else str(e).encode()
    os.close(slave)
    os.close(master)
    return status, pending


@pytest.mark.parametrize("seccomp", ["default", "off"])
def test_P1_T1_shared_terminal(sbox, seccomp):
    """Without --tty the caller's terminal is shared: only the seccomp filter stops TIOCSTI
    (seccomp off is the control that proves the harness sees an injection)."""
    argv = sbox.runner.argv(
        "run", sbox.name, "--seccomp", seccomp, "--", "/bin/sec_probe", "tiocsti:INJECTED"
    )
    status_, pending = _pty_session(argv)
    assert os.waitstatus_to_exitcode(status_) == 0
    if seccomp == "default":
        assert pending == b""
    else:
        assert pending == b"INJECTED"


def test_P1_T1_tiocsti_cannot_reach_the_callers_terminal(sbox):
    """With --tty the container gets its own pty: TIOCSTI (seccomp off, so only the pty
    stops it) types into that one, never into the caller's terminal."""
    argv = sbox.runner.argv(
        "run", sbox.name, "--tty", "--seccomp", "off", "--", "/bin/sec_probe", "tiocsti:INJECTED"
    )
    status_, pending = _pty_session(argv)
    assert os.waitstatus_to_exitcode(status_) == 0
    assert b"INJECTED" not in pending


def test_P1_T1_tiocsti_from_exec_tty_cannot_reach_the_callers_terminal(sbox, make_box):
    """The same through exec --tty, into a container started with seccomp off; without
    --tty the injection gets through (the control)."""
    box = make_box(sbox.runner, "tbox")
    assert box.runner("config", "tbox", "--set", "seccomp=off").returncode == 0
    box.start()
    try:
        for opts, injected in ((("--tty",), False), ((), True)):
            argv = box.runner.argv("exec", "tbox", *opts, "--", "/bin/sec_probe", "tiocsti:X")
            status_, pending = _pty_session(argv)
            assert os.waitstatus_to_exitcode(status_) == 0
            assert (b"X" in pending) == injected, opts
    finally:
        box.stop()
