"""Namespaces, exec, state and the tool boundary: security.md 8.4 P0-N1..N6 and P0-N8
(P0-N7, profile files, is in test_profile_files.py).

The pid-reuse test runs ruripy inside a test-private pid namespace, where the test may set
ns_last_pid to hand the dead init's pid to a decoy.
"""

import json
import marshal
import os
import pwd
import socket
import stat
import subprocess
import sys
import textwrap

import pytest
from conftest import Runner

from .conftest import MODES, descendants

NS = ("mnt", "pid", "ipc", "uts", "user", "net")
READ_NS = "for n in " + " ".join(NS) + "; do readlink /proc/self/ns/$n; done"


def ns_links(text: str) -> dict[str, str]:
    return dict(zip(NS, text.split(), strict=True))


# -- P0-N1 --------------------------------------------------------------------------------------


def test_P0_N1_own_pid_mount_ipc_uts_namespaces(sbox):
    r = sbox.run("sh", "-c", READ_NS + "; ls /proc")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    inside = dict(zip(NS, lines[: len(NS)], strict=True))
    host = {n: os.readlink(f"/proc/self/ns/{n}") for n in NS}
    for n in ("mnt", "pid", "ipc", "uts"):
        assert inside[n] != host[n], n
    assert inside["net"] == host["net"]  # the host network is shared by default
    assert (inside["user"] != host["user"]) == sbox.rootless
    pids = sorted(int(e) for e in lines[len(NS) :] if e.isdigit())
    assert pids[0] == 1 and max(pids) < 10, pids  # only the container's processes
    got = sbox.probe(f"kill:{os.getpid()}:0", "kill:1:0")
    assert got == {f"kill:{os.getpid()}:0": "ESRCH", "kill:1:0": "ok"}


def test_P0_N1_hostname_stays_inside(sbox):
    host = socket.gethostname()
    r = sbox.run(
        "--cap-add", "SYS_ADMIN", "--seccomp", "off", "sh", "-c", "hostname pwned-x && hostname"
    )
    assert (r.returncode, r.stdout) == (0, "pwned-x\n"), r.stderr
    assert socket.gethostname() == host
    r = sbox.run("sh", "-c", "hostname pwned-y")  # the default: no CAP_SYS_ADMIN
    assert r.returncode != 0
    assert socket.gethostname() == host


# -- P0-N2 --------------------------------------------------------------------------------------


def test_P0_N2_exec_joins_exactly_the_init_namespaces(sbox, _started_boxes):
    box = _started_boxes(sbox.mode)
    state = box.state()
    init = state["pid"]
    at_init = {n: os.readlink(f"/proc/{init}/ns/{n}") for n in NS}
    r = box("exec", "sh", "-c", READ_NS)
    assert r.returncode == 0, r.stderr
    assert ns_links(r.stdout) == at_init
    # ... which are the ones recorded at start.
    for n in ("mnt", "pid", "ipc", "uts", "user"):
        assert os.stat(f"/proc/{init}/ns/{n}").st_ino == state["ns"][n], n


# -- P0-N3 --------------------------------------------------------------------------------------

DRIVER = textwrap.dedent(
    """
    # Runs as pid 1 of a test-private pid namespace (unshare --pid --fork --mount-proc).
    import json, marshal, os, subprocess, sys, time

    cli, home, name, owner, marker = json.loads(sys.argv[1])
    out = {}

    def run(*args):
        r = subprocess.run(cli + list(args), capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
        return [r.returncode, r.stdout, r.stderr]

    def starttime(pid):
        data = open(f"/proc/{pid}/stat", "rb").read()
        return int(data[data.rindex(b")") + 2:].split()[19])

    def write_state(state):
        path = os.path.join(home, "state", name + ".rec")
        tmp = path + ".forged"
        with open(tmp, "wb") as f:
            f.write(marshal.dumps(state))
        os.chown(tmp, owner, owner)
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)

    out["start"] = run("start", name)
    state = marshal.load(open(os.path.join(home, "state", name + ".rec"), "rb"))
    pid = state["pid"]
    out["joined"] = run("exec", name, "true")
    os.kill(pid, 9)
    while True:  # we are this namespace's reaper: the dead init is ours to reap
        try:
            if os.waitpid(-1, 0)[0] == pid:
                break
        except ChildProcessError:
            break
    time.sleep(0.05)  # a later clock tick: the decoy's start time differs
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    decoy = subprocess.Popen(["sleep", "60"])
    out["decoy_pid"], out["init_pid"] = decoy.pid, pid
    write_state(state)  # the state the tool wrote, as it was (run/stop may have cleaned it)
    out["recycled"] = run("exec", name, "touch", marker)
    # A forged state: the decoy's start time, so only the namespace check is left.
    forged = dict(state, starttime=starttime(decoy.pid))
    write_state(forged)
    out["forged_starttime"] = run("exec", name, "touch", marker)
    # Forged to the last detail: the decoy's own namespaces too (an ordinary process).
    ns = {n: os.stat(f"/proc/{decoy.pid}/ns/{n}").st_ino for n in state["ns"]}
    write_state(dict(forged, ns=ns))
    out["forged_all"] = run("exec", name, "touch", marker)
    write_state(dict(forged, ns=ns))
    out["forged_stop"] = run("stop", name)
    out["decoy_alive"] = decoy.poll() is None
    decoy.kill()
    decoy.wait()
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("mode", MODES)
def test_P0_N3_exec_never_joins_a_recycled_pid(mode, scratch, workdir):
    box = scratch(mode)
    marker = f"/n3-marker-{os.getpid()}-{mode}"
    driver = os.path.join(workdir, "driver.py")
    with open(driver, "w") as f:
        f.write(DRIVER)
    cli = box.runner.argv()
    arg = json.dumps([cli, box.runner.home, box.name, box.root_uid, marker])
    r = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, driver, arg],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["start"][0] == 0, out["start"]
    assert out["joined"][0] == 0, out["joined"]
    assert out["decoy_pid"] == out["init_pid"]  # the pid really was recycled
    not_running = (
        125,
        "",
        f"ruripy: container {box.name} is not running; start it with "
        f"'ruripy start {box.name}' or 'ruripy run {box.name}'.\n",
    )
    for case in ("recycled", "forged_starttime", "forged_all"):
        assert tuple(out[case]) == not_running, (case, out[case])
    assert out["forged_stop"][0] == 0 and "is not running" in out["forged_stop"][2]
    assert out["decoy_alive"]  # stop did not signal the decoy
    assert not os.path.lexists(os.path.join(box.rootfs, marker.lstrip("/")))
    assert not os.path.lexists(marker)


# -- P0-N4 --------------------------------------------------------------------------------------


def test_P0_N4_state_is_private_and_outside_the_rootfs(sbox):
    sbox.start()
    try:
        path = sbox.runner.host_path("state", "box.rec")
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == (sbox.runner.user.pw_uid if sbox.rootless else 0)
        d = os.stat(os.path.dirname(path))
        assert stat.S_IMODE(d.st_mode) == 0o700 and d.st_uid == st.st_uid
        assert os.path.commonpath([path, sbox.rootfs]) != sbox.rootfs
        # Not reachable from inside, by any of its names.
        got = sbox.probe(f"open:{path}:r", f"ls:{sbox.runner.home}", command="exec")
        assert got == {f"open:{path}:r": "ENOENT", f"ls:{sbox.runner.home}": "ENOENT"}
    finally:
        sbox.stop()


def test_P0_N4_symlinked_state_is_refused(sbox, workdir):
    state_dir = sbox.runner.host_path("state")
    elsewhere = os.path.join(workdir, "elsewhere")
    os.mkdir(elsewhere, 0o700)
    if sbox.rootless:
        os.chown(elsewhere, sbox.root_uid, sbox.root_uid)
    os.rename(state_dir, state_dir + ".real")
    os.symlink(elsewhere, state_dir)
    try:
        r = sbox.run("true")
        assert r.returncode == 125
        assert r.stderr == (
            f"ruripy: {state_dir} is not a folder (a symlink or a file); remove it and retry.\n"
        )
        assert os.listdir(elsewhere) == []
    finally:
        os.unlink(state_dir)
        os.rename(state_dir + ".real", state_dir)
    # A state file that is a symlink is never followed: the container is not running.
    victim = os.path.join(workdir, "victim")
    with open(victim, "wb") as f:
        f.write(marshal.dumps({"pid": 1, "starttime": 0}))
    os.symlink(victim, os.path.join(state_dir, "box.rec"))
    try:
        r = sbox("exec", "true")
        assert r.returncode == 125
        assert "container box is not running" in r.stderr
    finally:
        if os.path.lexists(os.path.join(state_dir, "box.rec")):
            os.unlink(os.path.join(state_dir, "box.rec"))
    with open(victim, "rb") as f:
        assert marshal.load(f) == {"pid": 1, "starttime": 0}


def test_P0_N4_one_container_for_concurrent_runs(sbox):
    """Concurrent runs of one name: the lock lets exactly one of them start the container,
    the others join it (and end with it: 137 when the starter's command ends first)."""
    cmd = ("run", "box", "sh", "-c", "readlink /proc/self/ns/pid; sleep 1")
    procs = [
        sbox.runner.popen(*cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0 and set(codes) <= {0, 137}, outs
    assert len({o for o, _ in outs}) == 1, outs  # all in the one container that started
    assert [e for _, e in outs] == ["", "", ""]


def test_P0_N4_a_killed_lock_holder_releases_the_lock(sbox):
    """A ruripy process killed with SIGKILL while holding the container's lock does not
    leave it locked: the kernel drops the flock with the process."""
    code = (
        "import sys; from ruripy.store import Store; "
        "Store().lock('box').__enter__(); print('locked', flush=True); "
        "import time; time.sleep(60)"
    )
    argv = sbox.runner.argv()
    py = argv.index(sys.executable)
    holder = subprocess.Popen(
        argv[: py + 1] + ["-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    waiting = None
    try:
        assert holder.stdout.readline() == "locked\n", holder.stderr.read()
        waiting = sbox.runner.popen(
            "run", "box", "true", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=1.5)  # blocked on the lock
        os.kill(holder_pid(holder), 9)
        _, err = waiting.communicate(timeout=30)  # the lock is free: it goes on by itself
        assert waiting.returncode == 0, err
        r = sbox.run("true", timeout=30)
        assert r.returncode == 0, r.stderr
    finally:
        for p in (holder, waiting):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def holder_pid(p: subprocess.Popen) -> int:
    """The python process under runuser/env (the one holding the lock)."""
    for pid in descendants(p.pid):
        try:
            if os.readlink(f"/proc/{pid}/exe") == os.path.realpath(sys.executable):
                return pid
        except OSError:
            continue
    raise AssertionError("no python process found")


# -- P0-N5 --------------------------------------------------------------------------------------

BAD_NAMES = ["../x", "a/b", ".", "", "x" * 300, "..", "_x", "a\nb", "/etc"]


@pytest.mark.parametrize("mode", MODES)
def test_P0_N5_names_are_checked_before_any_file(mode, mode_runner, workdir):
    base = mode_runner(mode)
    home = os.path.join(workdir, f"never-made-{mode}")
    r0 = Runner(base.src, home, base.user)
    cases = [("run", name, "true") for name in BAD_NAMES]
    cases += [("exec", name, "true") for name in BAD_NAMES]
    for name in ("../x",) if base.rootless else ():  # the slower typer commands: once
        cases += [
            ("start", name),
            ("stop", name),
            ("rm", name),
            ("import", name, "/nonexistent.tar"),
            ("config", name),
        ]
    for cmd in cases:
        r = r0(*cmd)
        assert r.returncode == 125, (cmd, r.stderr)
        assert r.stderr.startswith("ruripy: invalid container name "), (cmd, r.stderr)
        assert not os.path.exists(home), cmd


# -- P0-N6 --------------------------------------------------------------------------------------


def test_P0_N6_setid_check(monkeypatch):
    from ruripy import __main__ as entry

    monkeypatch.setattr(os, "getresuid", lambda: (1000, 0, 0))
    monkeypatch.setattr(os, "getresgid", lambda: (1000, 1000, 1000))
    assert entry.setid_problem() == (
        "refusing to run with real and effective ids that differ (uid 1000/0, gid "
        "1000/1000): ruripy must never be setuid or setgid; run it as yourself, or as "
        "root with sudo."
    )
    monkeypatch.setattr(os, "getresuid", lambda: (1000, 1000, 1000))
    monkeypatch.setattr(os, "getresgid", lambda: (1000, 0, 1000))
    assert "gid 1000/0" in entry.setid_problem()
    monkeypatch.setattr(os, "getresgid", lambda: (1000, 1000, 0))
    assert entry.setid_problem() is None  # saved ids may differ (sudo -E style drops)


@pytest.mark.parametrize(
    "ids",
    [("--ruid", "1001"), ("--rgid", "1001", "--keep-groups"), ("--egid", "1001", "--keep-groups")],
)
def test_P0_N6_refuses_mismatched_ids(pbox, ids):
    """Real and effective ids differ, as under a setuid or setgid binary: refused at once."""
    r = subprocess.run(
        ["setpriv", *ids, "--", *pbox.runner.argv("run", "box", "true")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 125
    assert r.stderr.startswith("ruripy: refusing to run with real and effective ids that differ")
    r = subprocess.run(
        ["setpriv", *ids, "--", *pbox.runner.argv("list")], capture_output=True, text=True
    )
    assert r.returncode == 125


def test_P0_N6_no_setid_bits_or_file_capabilities_installed():
    from conftest import REPO

    roots = [os.path.join(REPO, "ruripy")]
    import ruripy

    roots.append(os.path.dirname(ruripy.__file__))
    scripts = [os.path.join(os.path.dirname(sys.executable), "ruripy"), "/usr/local/bin/ruripy"]
    files = [s for s in scripts if os.path.exists(s)]
    for root in roots:
        for dirpath, _, names in os.walk(root):
            files += [os.path.join(dirpath, n) for n in names]
    assert files
    for f in files:
        st = os.stat(f)
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), f
        assert "security.capability" not in os.listxattr(f), f


# -- P0-N8 --------------------------------------------------------------------------------------


@pytest.fixture
def other_user(src_copy, workdir):
    """User B: the unprivileged ruripy-nosub, with a storage root of its own."""
    try:
        pw = pwd.getpwnam("ruripy-nosub")
    except KeyError:
        pytest.skip("user ruripy-nosub is missing: run tests/setup.sh as root")
    home = os.path.join(workdir, "home-b")
    os.mkdir(home, 0o700)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    return Runner(src_copy, home, pw)


def test_P0_N8_users_act_only_on_their_own_containers(sbox, other_user):
    a = sbox.runner
    sbox.start()
    try:
        before = os.listdir(a.host_path("containers"))
        for cmd in (("exec", "box", "true"), ("rm", "-f", "box")):
            r = other_user(*cmd)
            assert r.returncode == 125, (cmd, r.stderr)
            assert r.stderr.startswith("ruripy: no such container: box."), (cmd, r.stderr)
        # Pointing RURIPY_HOME at A's storage does not help.
        for cmd in (("exec", "box", "true"), ("rm", "-f", "box")):
            r = other_user(*cmd, env={"RURIPY_HOME": a.home})
            assert r.returncode == 125, (cmd, r.stderr)
            assert r.stderr.startswith("ruripy: "), r.stderr
            assert "Traceback" not in r.stderr
        assert os.listdir(a.host_path("containers")) == before
        assert sbox("exec", "true").returncode == 0  # still running, untouched
    finally:
        sbox.stop()


def test_P0_N8_privileged_backend_needs_root(rbox):
    r = rbox.run("--backend", "privileged", "true")
    assert r.returncode == 125
    assert r.stderr == (
        "ruripy: backend privileged needs root; run ruripy with sudo, or use --backend rootless.\n"
    )


def test_P0_N8_storage_of_root_is_closed(pbox, rbox):
    """The test user cannot even look into root's storage (or read its state)."""
    st = os.stat(pbox.runner.home)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
    r = subprocess.run(
        ["runuser", "-u", rbox.runner.user.pw_name, "--", "ls", pbox.runner.home],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "Permission denied" in r.stderr
