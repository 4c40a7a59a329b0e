"""Running containers through the real CLI, as the unprivileged user and as root: run starts
or joins, start detaches, stop (SIGTERM to the whole container, SIGKILL after --time), ps,
parallel starts, and what a `kill -9` of ruripy or of the container leaves behind."""

import json
import marshal
import os
import signal
import subprocess
import time

import pytest

pytest.register_assert_rewrite("boxes")
from boxes import fails, listing, ok, pid_alive, ps, upper, wait_for  # noqa: E402

pytest_plugins = ("boxes",)  # fixtures: bb_tar, image, obox


def host_ns(pid: int) -> dict:
    return {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in ("mnt", "pid", "uts", "ipc", "user")}


def test_run_starts_the_container_and_returns_the_status(obox):
    assert ok(obox("run", "box", "echo", "hello")).stdout == "hello\n"
    assert obox("run", "box", "sh", "-c", "exit 3").returncode == 3
    assert ps(obox) == {}  # the container ended with its command
    assert os.listdir(obox.host_path("state")) == []


def test_run_without_a_command_starts_a_login_shell(obox):
    p = obox("run", "box", input="echo $0; exit 4\n")
    assert p.returncode == 4, p.stderr
    assert p.stdout.strip().endswith("sh")


def test_start_detaches_and_run_joins_the_running_container(obox):
    r = obox
    ok(r("config", "box", "--set", "hostname=started"))
    t0 = time.monotonic()
    ok(r("start", "box"))
    assert time.monotonic() - t0 < 5
    rows = ps(r)
    assert set(rows) == {"box"}
    init = rows["box"]["pid"]
    assert rows["box"]["backend"] == ("rootless" if r.rootless else "privileged")
    assert pid_alive(init)
    # `run` on a running container joins it: same namespaces, its hostname, the init is pid 1.
    out = ok(r("run", "--hostname", "ignored", "box", "sh", "-c", "hostname; cat /proc/1/cmdline"))
    assert out.stdout.startswith("started\n")
    assert "start" in out.stdout and "box" in out.stdout
    out = ok(r("run", "box", "readlink", "/proc/self/ns/mnt")).stdout.strip()
    assert out == host_ns(init)["mnt"]
    # start again: nothing new
    p = ok(r("start", "box"))
    assert "already running" in p.stderr
    assert ps(r)["box"]["pid"] == init
    table = ok(r("ps")).stdout.splitlines()
    assert table[0].split() == ["NAME", "PID", "BACKEND", "SINCE"]
    assert table[1].split()[:2] == ["box", str(init)]
    ok(r("stop", "box"))
    assert wait_for(lambda: not pid_alive(init))
    assert ps(r) == {}
    p = ok(r("stop", "box"))
    assert "not running" in p.stderr


def _paused_before_join(r, command: str, *args: str) -> tuple[subprocess.Popen, int]:
    """`ruripy COMMAND box ARGS` stopped by its test hook just before it joins the
    container (after every check passed); (the process, its pid to SIGCONT)."""
    p = r.popen(
        command, "box", *args,
        env={"RURIPY_TEST_PAUSE": "join"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = p.stderr.readline()
    assert line.startswith("ruripy-test-pause join pid="), line
    return p, int(line.split("pid=")[1])


def _resume(p: subprocess.Popen, pid: int) -> None:
    """SIGCONT the paused ruripy, then runuser above it (which stops itself with its child,
    and may have reaped it by then)."""
    for who in (pid, p.pid):
        try:
            os.kill(who, signal.SIGCONT)
        except ProcessLookupError:
            pass


def test_run_that_finds_its_container_stopped_as_it_joins_starts_it_afresh(obox):
    r = obox
    ok(r("start", "box"))
    init = _started(r)["pid"]
    p, pid = _paused_before_join(r, "run", "sh", "-c", "echo fresh; cat /proc/1/cmdline")
    try:
        ok(r("stop", "box"))  # the init is gone between run's check and its join
        assert wait_for(lambda: not pid_alive(init))
    finally:
        _resume(p, pid)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    lines = out.split("\n", 1)
    assert lines[0] == "fresh"
    assert "start" not in lines[1] and "run" in lines[1]  # pid 1 of a new, attached run
    assert ps(r) == {}


def test_exec_that_finds_its_container_stopped_as_it_joins_says_not_running(obox):
    r = obox
    ok(r("start", "box"))
    init = _started(r)["pid"]
    p, pid = _paused_before_join(r, "exec", "echo", "joined")
    try:
        ok(r("stop", "box"))
        assert wait_for(lambda: not pid_alive(init))
    finally:
        _resume(p, pid)
    out, err = p.communicate(timeout=60)
    assert (p.returncode, out) == (125, ""), err
    assert err.strip() == "ruripy: the container is not running (its init has exited).", err


def _run_bg(r, *args):
    return r.popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _started(r, name="box"):
    return wait_for(lambda: ps(r).get(name), timeout=20)


@pytest.mark.parametrize(
    "script, expect",
    [
        ('trap "echo TERM seen" TERM; while true; do sleep 0.1; done', "TERM seen"),
        ('trap "" TERM; while true; do sleep 0.1; done', ""),
    ],
    ids=["traps-term", "ignores-term"],
)
def test_stop_waits_time_seconds_then_kills(obox, script, expect):
    r = obox
    p = _run_bg(r, "run", "box", "sh", "-c", script)
    try:
        assert _started(r)
        time.sleep(0.3)  # the trap is set
        t0 = time.monotonic()
        ok(r("stop", "box", "--time", "2"))
        took = time.monotonic() - t0
        assert 1.8 < took < 6, took
        out, _ = p.communicate(timeout=20)
        assert p.returncode == 128 + signal.SIGKILL
        assert expect in out
    finally:
        p.kill()
    assert ps(r) == {}


def test_stop_is_quick_when_the_command_ends_on_sigterm(obox):
    r = obox
    p = _run_bg(r, "run", "box", "sleep", "100")
    try:
        assert _started(r)
        t0 = time.monotonic()
        ok(r("stop", "box", "--time", "10"))
        assert time.monotonic() - t0 < 4
        p.communicate(timeout=20)
        assert p.returncode == 128 + signal.SIGTERM
    finally:
        p.kill()


@pytest.mark.parametrize("how", ["run", "start"])
def test_stop_sends_sigterm_to_every_process_of_the_container(obox, how):
    r = obox
    p = None
    if how == "run":
        p = _run_bg(r, "run", "box", "sleep", "1000")
        assert _started(r)
    else:
        ok(r("start", "box"))
    # A second process, started by exec, saves a file when it gets SIGTERM.
    helper = _run_bg(
        r,
        "exec",
        "box",
        "sh",
        "-c",
        'trap "echo bye > /root/term; exit 0" TERM; echo ready; while true; do sleep 0.1; done',
    )
    try:
        assert helper.stdout.readline() == "ready\n"
        ok(r("stop", "box", "--time", "5"))
        helper.communicate(timeout=20)
        with open(upper(r, "box", "root", "term")) as f:
            assert f.read() == "bye\n"
        if p:
            p.communicate(timeout=20)
            assert p.returncode == 128 + signal.SIGTERM
    finally:
        helper.kill()
        if p:
            p.kill()


def test_stop_time_zero_kills_at_once(obox):
    r = obox
    ok(r("start", "box"))
    ok(r("exec", "box", "sh", "-c", 'trap "" TERM; sleep 1000 >/dev/null 2>&1 &'))
    t0 = time.monotonic()
    ok(r("stop", "box", "--time", "0"))
    assert time.monotonic() - t0 < 3
    assert ps(r) == {}


def _descendants(pid: int) -> list[int]:
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except FileNotFoundError:
        return out
    for k in kids:
        out.append(k)
        out.extend(_descendants(k))
    return out


def _python_below(pid: int) -> int:
    for p in [pid, *_descendants(pid)]:
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except FileNotFoundError:
            continue
        if b"python" in cmd[0] and b"ruripy" in cmd:
            return p
    raise AssertionError("no ruripy process found")


def test_kill_9_of_run_takes_the_container_with_it(obox):
    r = obox
    p = _run_bg(r, "run", "box", "sleep", "100")
    try:
        row = _started(r)
        assert row
        init = row["pid"]
        ruripy = _python_below(p.pid)
        tree = _descendants(ruripy)
        assert init in tree
        os.kill(ruripy, signal.SIGKILL)
        p.communicate(timeout=20)
        for pid in tree:
            assert wait_for(lambda pid=pid: not pid_alive(pid)), f"{pid} survived"
    finally:
        p.kill()
    # The next command sees a stopped container, cleans the stale state, and runs.
    assert ps(r) == {}
    assert not os.path.exists(r.host_path("state", "box.rec"))
    assert ok(r("run", "box", "echo", "again")).stdout == "again\n"
    assert listing(r)["box"]["status"] == "stopped"


def test_a_dead_init_leaves_stale_state_that_the_next_look_cleans(obox):
    r = obox
    ok(r("start", "box"))
    init = ps(r)["box"]["pid"]
    os.kill(init, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(init))
    assert os.path.exists(r.host_path("state", "box.rec"))
    fails(r("exec", "box", "true"), "box is not running")
    assert listing(r)["box"]["status"] == "stopped"
    assert not os.path.exists(r.host_path("state", "box.rec"))
    ok(r("start", "box"))
    assert ps(r)["box"]["pid"] != init
    ok(r("stop", "box"))


def test_state_of_a_reused_pid_is_not_trusted(obox):
    """A state file naming a live process that is not the init (pid reuse) means stopped,
    and that process is never signalled or joined."""
    r = obox
    ok(r("start", "box"))
    path = r.host_path("state", "box.rec")
    with open(path, "rb") as f:
        state = marshal.loads(f.read())
    ok(r("stop", "box"))
    state["pid"] = os.getpid()  # this test runner: alive, and not the container's init
    with open(path, "wb") as f:
        f.write(marshal.dumps(state))
    if r.user:
        os.chown(path, r.user.pw_uid, r.user.pw_gid)
    os.chmod(path, 0o600)
    fails(r("exec", "box", "true"), "not running")
    assert ps(r) == {}
    assert not os.path.exists(path)


def test_parallel_starts_of_one_name_start_it_once(obox):
    r = obox
    procs = [_run_bg(r, "start", "box") for _ in range(4)]
    results = [(p.wait(60), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [c for c, _ in results] == [0, 0, 0, 0], results
    assert sum("already running" in e for _, e in results) == 3, results
    assert len(ps(r)) == 1
    init = ps(r)["box"]["pid"]
    # Exactly one init: no other ruripy init process of this container.
    ok(r("stop", "box"))
    assert wait_for(lambda: not pid_alive(init))


def test_parallel_run_and_rm_never_leave_a_half_removed_container(obox):
    r = obox
    run = _run_bg(r, "run", "box", "sleep", "2")
    rm = _run_bg(r, "rm", "box")
    run.communicate(timeout=60)
    rm.communicate(timeout=60)
    # Either rm came first (run then finds no container) or run did (rm is refused).
    if rm.returncode == 0:
        assert run.returncode == 125
        assert listing(r) == {}
    else:
        assert rm.returncode == 125
        assert run.returncode == 0
        assert set(listing(r)) == {"box"}
        ok(r("run", "box", "true"))
    assert os.listdir(r.host_path("tmp")) == []


def test_ps_json_has_name_pid_backend_since(obox, image):
    r = obox
    ok(r("create", "two", image))
    ok(r("start", "box"))
    ok(r("start", "two"))
    try:
        rows = json.loads(ok(r("ps", "--json")).stdout)
        assert [x["name"] for x in rows] == ["box", "two"]
        for x in rows:
            assert set(x) == {"name", "pid", "backend", "since"}
            assert abs(x["since"] - time.time()) < 120
    finally:
        ok(r("stop", "box"))
        ok(r("stop", "two"))


def test_stop_and_start_of_missing_containers_fail_clearly(runner):
    for cmd in ("start", "stop", "run"):
        fails(runner(cmd, "nope"), "no such container: nope")
