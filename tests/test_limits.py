"""--memory, --cpus, --pids-limit: a cgroup of the container's own, or a clear refusal.

As root the limits are read back from the host side (the container's init is in the
cgroup that holds them), a fork bomb stops at --pids-limit, and the cgroup goes away with
the container. As the unprivileged test user on a host without a delegated cgroup, every
limit is refused with exit status 125 and what to do (security.md P1-L2).
"""

import json
import os
import subprocess
import time

import pytest

from ruripy.sandbox import cgroups


def _ps_pid(runner, name: str, timeout: float = 20) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = runner("ps", "--json")
        assert r.returncode == 0, r.stderr
        for row in json.loads(r.stdout):
            if row["name"] == name:
                return row["pid"]
        time.sleep(0.05)
    raise AssertionError(f"{name} did not show up in ps")


def _cgroup_dirs(pid: int) -> dict:
    """{controller: host folder} of process `pid`'s cgroups (v1 per controller, v2 as "")."""
    v1_mounts, v2_mount = cgroups.hierarchies()
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if hid == "0" and ctrls == "" and v2_mount:
                out[""] = cgroups._host_dir(*v2_mount, path)
            for c in ctrls.split(","):
                if c in v1_mounts:
                    out[c] = cgroups._host_dir(*v1_mounts[c], path)
    return out


def _limit_dir(pid: int, ctrl: str) -> str:
    dirs = _cgroup_dirs(pid)
    d = dirs.get(ctrl) or dirs.get("")
    assert d and os.path.basename(d).startswith("ruripy-box-"), dirs
    return d


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _v2(d: str) -> bool:
    return os.path.exists(os.path.join(d, "cgroup.controllers"))


@pytest.fixture
def rbox(privileged, rootfs_dir):
    assert privileged("import", "box", rootfs_dir).returncode == 0
    return privileged


def _limits_possible() -> None:
    try:
        cgroups.prepare("probe", {"memory": 1 << 26, "cpus": 1.5, "pids_limit": 64})
    except Exception as e:  # the host has no such controller at all
        pytest.skip(f"this host cannot limit memory, cpu and pids through cgroups: {e}")


def test_limits_are_read_back_and_removed(rbox):
    _limits_possible()
    p = rbox.popen(
        "run", "--memory", "64m", "--cpus", "1.5", "--pids-limit", "100", "box",
        "sleep", "300", stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        pid = _ps_pid(rbox, "box")
        mem = _limit_dir(pid, "memory")
        cpu = _limit_dir(pid, "cpu")
        pids = _limit_dir(pid, "pids")
        if _v2(mem):
            assert _read(os.path.join(mem, "memory.max")) == str(64 << 20)
        else:
            assert _read(os.path.join(mem, "memory.limit_in_bytes")) == str(64 << 20)
        if _v2(cpu):
            assert _read(os.path.join(cpu, "cpu.max")) == "150000 100000"
        else:
            assert _read(os.path.join(cpu, "cpu.cfs_quota_us")) == "150000"
            assert _read(os.path.join(cpu, "cpu.cfs_period_us")) == "100000"
        assert _read(os.path.join(pids, "pids.max")) == "100"
        # The whole container is inside: init and the command.
        assert str(pid) in _read(os.path.join(pids, "cgroup.procs")).split()
        assert rbox("stop", "box", "--time", "5").returncode == 0
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    for d in {mem, cpu, pids}:
        end = time.monotonic() + 10
        while os.path.exists(d) and time.monotonic() < end:
            time.sleep(0.05)
        assert not os.path.exists(d), f"{d} was left behind"


def test_fork_bomb_stops_at_the_pids_limit(rbox):
    _limits_possible()
    # A flood of sleepers that stay, and the classic bomb; the command itself then execs
    # (a shell whose own fork fails gives up). It goes off once the test has found the
    # container: at the limit the bomb's shells spin, and would starve `ruripy ps`.
    bomb = (
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; "
        "(while :; do sleep 1000 & done) & b() { b | b & }; b; exec sleep 1000"
    )
    p = rbox.popen(
        "run", "--pids-limit", "64", "box", "sh", "-c", bomb,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        pid = _ps_pid(rbox, "box")
        d = _limit_dir(pid, "pids")
        r = rbox("exec", "box", "touch", "/tmp/go")
        assert r.returncode == 0, r.stderr
        events_file = os.path.join(d, "pids.events")
        seen = []
        end = time.monotonic() + 20
        while time.monotonic() < end:  # until a fork has been refused at the limit
            seen.append(int(_read(os.path.join(d, "pids.current"))))
            if int(dict(x.split() for x in _read(events_file).splitlines())["max"]) > 0:
                break
            time.sleep(0.01)
        for _ in range(100):  # and it stays bounded
            seen.append(int(_read(os.path.join(d, "pids.current"))))
            time.sleep(0.01)
        assert max(seen) <= 64, seen
        assert len(_read(os.path.join(d, "cgroup.procs")).split()) <= 64
        events = dict(line.split() for line in _read(events_file).splitlines())
        assert int(events["max"]) > 0  # forks were refused at the limit of 64
        # The host is fine: it still starts processes.
        assert subprocess.run(["true"], timeout=10).returncode == 0
        r = rbox("stop", "box", "--time", "2")
        assert r.returncode == 0, r.stderr
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    end = time.monotonic() + 10
    while os.path.exists(d) and time.monotonic() < end:
        time.sleep(0.05)
    assert not os.path.exists(d)


def test_detached_start_keeps_the_cgroup_until_stop(rbox):
    _limits_possible()
    assert rbox("config", "box", "--set", "pids_limit=77").returncode == 0
    r = rbox("start", "box")
    assert r.returncode == 0, r.stderr
    try:
        pid = _ps_pid(rbox, "box")
        d = _limit_dir(pid, "pids")
        assert _read(os.path.join(d, "pids.max")) == "77"
        r = rbox("exec", "box", "sh", "-c", "echo joined")
        assert r.stdout == "joined\n"
    finally:
        assert rbox("stop", "box").returncode == 0
    assert not os.path.exists(d)


def test_proot_session_is_limited_too(rbox):
    _limits_possible()
    r = rbox("run", "--backend", "proot", "--pids-limit", "50", "box", "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    pids_line = [line for line in r.stdout.splitlines() if "pids" in line or line.startswith("0::")]
    assert any("/ruripy-box-" in line for line in pids_line), r.stdout


def test_rootless_limits_need_a_writable_cgroup(rootless, rootfs_dir):
    assert rootless("import", "box", rootfs_dir).returncode == 0
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from ruripy.sandbox import cgroups\n"
        "try:\n cgroups.prepare('x', {'memory': 1 << 26})\nexcept Exception as e:\n print(e)\n"
        "else:\n print('writable')"
    )
    probe = subprocess.run(
        ["runuser", "-u", rootless.user.pw_name, "--", "python3", "-c", code, rootless.src],
        capture_output=True,
        text=True,
    )
    if probe.stdout.strip() == "writable":
        pytest.skip("the test user has a delegated memory cgroup here")
    for opt, value, key in (
        ("--memory", "64m", "memory"),
        ("--cpus", "1", "cpus"),
        ("--pids-limit", "64", "pids_limit"),
    ):
        r = rootless("run", opt, value, "box", "true")
        assert r.returncode == 125, (opt, r.stderr)
        assert r.stderr.startswith(f"ruripy: {opt} needs a cgroup the caller may write; ")
        assert f"'ruripy config NAME --unset {key}'" in r.stderr
        assert len(r.stderr.splitlines()) == 1


def test_prepare_plans_nothing_without_limits():
    assert cgroups.prepare("box", {"memory": None, "cpus": None, "pids_limit": None}) is None


def test_host_dir_follows_the_mount_root():
    assert cgroups._host_dir("/sys/fs/cgroup/memory", "/", "/a/b") == "/sys/fs/cgroup/memory/a/b"
    assert cgroups._host_dir("/sys/fs/cgroup", "/a", "/a/b") == "/sys/fs/cgroup/b"
    assert cgroups._host_dir("/sys/fs/cgroup", "/a", "/c") is None
    assert cgroups._host_dir("/sys/fs/cgroup", "/", "/") == "/sys/fs/cgroup"


def test_values_for_v1_and_v2():
    assert cgroups._values("memory", 1 << 20, True) == [("memory.max", "1048576")]
    assert cgroups._values("memory", 1 << 20, False) == [("memory.limit_in_bytes", "1048576")]
    assert cgroups._values("cpus", 0.5, True) == [("cpu.max", "50000 100000")]
    assert cgroups._values("cpus", 2, False) == [
        ("cpu.cfs_period_us", "100000"),
        ("cpu.cfs_quota_us", "200000"),
    ]
    assert cgroups._values("pids_limit", 64, False) == [("pids.max", "64")]


def test_v2_plan_next_to_the_callers_cgroup(tmp_path, monkeypatch):
    """cgroup v2 (not on this host's controllers): the container's cgroup is a sibling of
    the caller's, and missing controllers are enabled in the parent's subtree_control."""
    parent = tmp_path / "user.slice"
    (parent / "me.scope").mkdir(parents=True)
    (parent / "cgroup.controllers").write_text("cpu memory pids\n")
    (parent / "cgroup.subtree_control").write_text("pids\n")
    monkeypatch.setattr(cgroups, "hierarchies", lambda: ({}, (str(tmp_path), "/")))
    monkeypatch.setattr(cgroups, "own_cgroups", lambda: ({}, "/user.slice/me.scope"))
    plan = cgroups.prepare("box", {"memory": 1 << 26, "cpus": 0.5, "pids_limit": 10})
    leaf = str(parent / f"ruripy-box-{os.getpid()}")
    control = str(parent / "cgroup.subtree_control")
    assert plan == {
        "dirs": [leaf],
        "files": [
            (f"{leaf}/memory.max", str(1 << 26)),
            (f"{leaf}/cpu.max", "50000 100000"),
            (f"{leaf}/pids.max", "10"),
        ],
        "enable": [(control, "+memory"), (control, "+cpu")],
    }
    (parent / "cgroup.controllers").write_text("pids\n")
    with pytest.raises(Exception, match="--memory needs a cgroup the caller may write; the "
                       "memory controller is not available"):  # fmt: skip
        cgroups.prepare("box", {"memory": 1 << 26})


def test_every_limit_option_is_applied_by_cgroups():
    """lifecycle loads sandbox/cgroups only for a profile with one of options.LIMIT_KEYS:
    that list must name every limit cgroups applies, and nothing else."""
    from ruripy import options

    assert set(options.LIMIT_KEYS) == set(cgroups.LIMITS)
    assert all(k in options.BY_KEY for k in options.LIMIT_KEYS)
