"""`exec` through the real CLI, as the unprivileged user and as root: it joins the running
container's namespaces (nothing new, nothing mounted), applies the profile's user, workdir,
environment, capabilities, seccomp and no_new_privs, returns the command's status, and
copes with 50 joins at once."""

import json
import os
import signal
import subprocess
import time

import pytest

pytest.register_assert_rewrite("boxes")
from boxes import fails, in_pty, ok, ps, wait_for  # noqa: E402

pytest_plugins = ("boxes",)  # fixtures: bb_tar, image, obox

NAMESPACES = ("mnt", "pid", "uts", "ipc", "user", "net", "cgroup")
STATUS_LINES = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")


@pytest.fixture
def started(obox):
    """'box' started detached; its init's host pid in .init."""
    ok(obox("start", "box"))
    obox.init = ps(obox)["box"]["pid"]
    yield obox
    obox("stop", "box", "--time", "1")


def _ns_of(r, *exec_args) -> dict:
    script = f"for n in {' '.join(NAMESPACES)}; do echo $n $(readlink /proc/self/ns/$n); done"
    out = ok(r("exec", *exec_args, "box", "sh", "-c", script)).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def _host_ns(pid: int) -> dict:
    return {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in NAMESPACES}


def test_exec_joins_every_namespace_of_the_init(started):
    r = started
    inside = _ns_of(r)
    assert inside == _host_ns(r.init)
    mine = _host_ns(os.getpid())
    for n in ("mnt", "pid", "uts", "ipc"):
        assert inside[n] != mine[n], n
    assert (inside["user"] != mine["user"]) == r.rootless
    assert inside["net"] == mine["net"]  # --net host (the default)


def test_exec_joins_the_network_namespace_with_net_none(obox):
    r = obox
    ok(r("config", "box", "--set", "net=none"))
    ok(r("start", "box"))
    try:
        init = ps(r)["box"]["pid"]
        inside = _ns_of(r)
        assert inside == _host_ns(init)
        assert inside["net"] != _host_ns(os.getpid())["net"]
        assert ok(r("exec", "box", "ls", "/sys/class/net")).stdout.split() == ["lo"]
    finally:
        ok(r("stop", "box"))


def test_exec_runs_in_the_container_pid_namespace(started):
    r = started
    out = ok(r("exec", "box", "sh", "-c", "echo $$; ps -o pid,comm")).stdout.split("\n", 1)
    assert int(out[0]) > 1
    pids = [line.split()[0] for line in out[1].splitlines()[1:]]
    assert "1" in pids and len(pids) <= 4, out


def test_exec_joins_a_container_started_by_run(obox):
    r = obox
    p = r.popen("run", "box", "sleep", "100", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: ps(r).get("box"), timeout=20)
        out = ok(r("exec", "box", "ps", "-o", "pid,args")).stdout
        assert "sleep 100" in out
    finally:
        ok(r("stop", "box", "--time", "1"))
        p.wait(20)
        p.stderr.close()


def test_exec_mounts_nothing(started):
    r = started
    count = "wc -l < /proc/self/mountinfo"
    first = ok(r("exec", "box", "sh", "-c", count)).stdout
    with open(f"/proc/{r.init}/mountinfo") as f:
        host_view = f.read()
    for _ in range(10):
        assert ok(r("exec", "box", "sh", "-c", count)).stdout == first
    with open(f"/proc/{r.init}/mountinfo") as f:
        assert f.read() == host_view
    assert int(first) == len(host_view.splitlines())


@pytest.mark.parametrize(
    "argv, status",
    [
        (["sh", "-c", "exit 7"], 7),
        (["sh", "-c", "kill -USR1 $$"], 128 + signal.SIGUSR1),
        (["sh", "-c", "kill -KILL $$"], 128 + signal.SIGKILL),
        (["no-such-command"], 127),
        (["/no/such/path"], 127),
        (["/etc/passwd"], 126),
        (["/etc"], 126),
        (["true"], 0),
    ],
    ids=["exit-7", "usr1", "kill", "missing", "missing-path", "not-executable", "folder", "ok"],
)
def test_exec_returns_the_command_status(started, argv, status):
    p = started("exec", "box", *argv)
    assert p.returncode == status, (p.returncode, p.stderr)
    if status in (126, 127):
        assert argv[0] in p.stderr and "Traceback" not in p.stderr
    assert ps(started)["box"]["pid"] == started.init  # the container is unaffected


def _status(r, *exec_args) -> dict:
    script = "id -u; id -g; pwd; echo $FOO; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status"
    out = ok(r("exec", *exec_args, "box", "sh", "-c", script)).stdout.splitlines()
    fields = dict(line.split(":\t") for line in out[4:])
    fields.update(uid=out[0], gid=out[1], cwd=out[2], FOO=out[3])
    return {k: v.strip() for k, v in fields.items()}


def _run_status(r) -> dict:
    script = "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status"
    out = ok(r("run", "-u", "root", "box", "sh", "-c", script)).stdout.splitlines()
    return {k: v.strip() for k, v in (line.split(":\t") for line in out)}


def test_exec_applies_the_profile(obox):
    r = obox
    as_root_in_run = _run_status(r)
    ok(r("config", "box", "--set", "user=user", "--set", "workdir=/tmp", "--set", "env=FOO=bar"))
    ok(r("start", "box"))
    try:
        got = _status(r)
        assert (got["uid"], got["gid"], got["cwd"], got["FOO"]) == ("1000", "1000", "/tmp", "bar")
        assert got["CapEff"] == got["CapPrm"] == "0000000000000000"
        assert got["NoNewPrivs"] == "1"
        assert got["Seccomp"] == "2"
        # exec options override the profile for that exec only
        got = _status(r, "-u", "root", "-w", "/etc", "-e", "FOO=cli")
        assert (got["uid"], got["cwd"], got["FOO"]) == ("0", "/etc", "cli")
        for k in STATUS_LINES:
            assert got[k] == as_root_in_run[k], k
        assert _status(r)["uid"] == "1000"
    finally:
        ok(r("stop", "box"))


def test_exec_applies_the_profile_hardening_settings(obox):
    r = obox
    ok(r("config", "box", "--set", "cap_drop=ALL", "--set", "no_new_privs=false"))
    ok(r("config", "box", "--set", "seccomp=off"))
    ok(r("start", "box"))
    try:
        got = _status(r)
        assert got["uid"] == "0"
        assert got["CapEff"] == got["CapBnd"] == "0000000000000000"
        assert got["NoNewPrivs"] == "0"
        assert got["Seccomp"] == "0"
    finally:
        ok(r("stop", "box"))


def test_fifty_execs_at_once_all_succeed(started):
    r = started
    procs = [
        r.popen(
            "exec",
            "box",
            "sh",
            "-c",
            f"echo ok {i}",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(50)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append((p.returncode, out.decode(), err.decode()))
    bad = [x for x in results if x[0] != 0]
    assert not bad, bad[:3]
    assert sorted(out for _, out, _ in results) == sorted(f"ok {i}\n" for i in range(50))
    assert ps(r)["box"]["pid"] == r.init


def test_exec_into_a_stopped_container_fails_clearly(obox):
    r = obox
    fails(r("exec", "box", "true"), "box is not running", "ruripy start box")
    ok(r("start", "box"))
    ok(r("stop", "box"))
    fails(r("exec", "box", "true"), "box is not running")
    fails(r("exec", "nope", "true"), "no such container: nope")
    fails(r("exec", "box"), "needs a command")
    fails(r("exec", "box", "--hostname", "x", "true"))  # not an exec option


def test_exec_under_a_profile_that_refuses_clone3_with_eperm(obox, workdir):
    """A seccomp profile that answers clone3 with EPERM (as older container profiles did):
    glibc's posix_spawn then fails instead of falling back to clone, and exec starts the
    command with a fork instead, in the same clean state."""
    r = obox
    profile = os.path.join(workdir, "no-clone3.json")
    with open(profile, "w") as f:
        json.dump(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
            },
            f,
        )
    os.chmod(profile, 0o644)
    ok(r("config", "box", "--set", f"seccomp={profile}"))
    ok(r("start", "box"))
    try:
        script = "grep -E '^(SigBlk|SigIgn|Seccomp):' /proc/self/status; echo $$ $PPID"
        out = ok(r("exec", "box", "sh", "-c", script)).stdout.split("\n")
        assert out[:3] == ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000", "Seccomp:\t2"]
        assert out[3].split()[1] == "0"  # its parent is outside the container's pid namespace
        fails(r("exec", "box", "nope"), "nope: command not found in the container", status=127)
    finally:
        ok(r("stop", "box"))


def test_exec_tty_gives_a_new_controlling_terminal(started):
    """exec -t: a new pty of the container's devpts is the command's stdio and controlling
    terminal (a session of its own), relayed to the caller's terminal, status passed on."""
    r = started
    script = "tty; set -- $(cat /proc/$$/stat); echo pid=$1 sid=$6 tty_nr=$7; exit 7"
    code, out = in_pty(r.argv("exec", "-t", "box", "sh", "-c", script), b"")
    assert code == 7, out
    lines = out.decode().replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/"), lines
    fields = dict(x.split("=") for x in lines[1].split())
    assert fields["sid"] == fields["pid"] and fields["tty_nr"] != "0", lines


def test_a_fifo_for_etc_passwd_hangs_neither_run_nor_exec(obox):
    """The container's /etc/passwd and /etc/group are read to find the user: a FIFO in
    their place (no writer, or a writer that never writes) must not make ruripy wait."""
    r = obox
    ok(r("run", "box", "sh", "-c", "rm /etc/passwd /etc/group && mkfifo /etc/passwd /etc/group"))
    assert ok(r("run", "box", "echo", "ok", timeout=30)).stdout == "ok\n"
    ok(r("start", "box"))
    try:
        assert ok(r("exec", "box", "echo", "ok", timeout=30)).stdout == "ok\n"
        # A writer holds it open and never writes: reading it would block.
        holder = r.popen("exec", "box", "sh", "-c", "exec 3>/etc/passwd; sleep 30")
        try:
            time.sleep(0.5)
            assert ok(r("exec", "box", "echo", "ok", timeout=30)).stdout == "ok\n"
        finally:
            holder.kill()
            holder.wait()
    finally:
        ok(r("stop", "box"))
