"""Containers on disk through the real CLI, as the unprivileged user and as root: overlay
creation, the copy fallback, list, rmi of a used image, profiles and `config`, ruri
configs, rm/rename/clone, bad names, parallel commands and `kill -9` in the middle."""

import io
import json
import os
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import time

import pytest

pytest.register_assert_rewrite("boxes")
from boxes import (  # noqa: E402 (after register_assert_rewrite)
    disk_usage,
    fails,
    image_dir,
    listing,
    ok,
    ps,
    python_as,
    tree_digest,
    upper,
    wait_for,
)

pytest_plugins = ("boxes",)  # fixtures: bb_tar, image, obox

# -- create: overlay, copy fallback, list ----------------------------------------------------


CREATE_TIMED = """
import sys, time
from ruripy import containers
t0 = time.perf_counter()
containers.create(sys.argv[1], sys.argv[2], {})
print(time.perf_counter() - t0)
"""


def test_create_makes_an_overlay_instantly_with_almost_no_disk(runner, image):
    t0 = time.monotonic()
    ok(runner("create", "box0", image))
    assert time.monotonic() - t0 < 3.0
    # create's own work, without starting Python and typer (seconds on a busy test machine)
    took = min(float(ok(python_as(runner, CREATE_TIMED, n, image)).stdout) for n in ("box", "b2"))
    assert took < 0.5, f"create took {took:.3f} s"
    cdir = runner.host_path("containers", "box")
    assert sorted(os.listdir(cdir)) == [
        "container.rec",
        "profile.cache",
        "profile.toml",
        "rootfs",
        "upper",
        "work",
    ]
    assert os.listdir(os.path.join(cdir, "rootfs")) == []
    assert disk_usage(cdir) < 64 * 1024
    c = listing(runner)["box"]
    assert c["storage"] == "overlay"
    assert c["image"] == image
    assert c["backend"] == ("rootless" if runner.rootless else "privileged")
    assert c["status"] == "stopped"
    assert c["size"] < 64 * 1024
    assert ok(runner("run", "box", "cat", "/etc/passwd")).stdout.startswith("root:x:0:0:")


def test_writes_land_in_upper_and_never_change_the_image(obox, image):
    r = obox
    rootfs = os.path.join(image_dir(r, image), "rootfs")
    before = tree_digest(rootfs)
    ok(r("run", "box", "sh", "-c", "echo hi > /new; rm /etc/group; echo x >> /etc/passwd"))
    assert tree_digest(rootfs) == before
    with open(upper(r, "box", "new")) as f:
        assert f.read() == "hi\n"
    with open(upper(r, "box", "etc", "passwd")) as f:
        assert f.read().endswith("x\n")
    # The deletion is a whiteout in upper/, the image keeps its file.
    st = os.lstat(upper(r, "box", "etc", "group"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.path.exists(os.path.join(rootfs, "etc", "group"))
    seen = ok(r("run", "box", "sh", "-c", "cat /new; ls /etc/group 2>&1; tail -n1 /etc/passwd"))
    assert seen.stdout.splitlines()[0] == "hi"
    assert "No such file" in seen.stdout
    assert seen.stdout.splitlines()[-1] == "x"
    # A second container of the same image sees the pristine image.
    ok(r("create", "other", image))
    fresh = ok(r("run", "other", "sh", "-c", "ls /new 2>&1; cat /etc/group | head -n1"))
    assert "No such file" in fresh.stdout
    assert "root:x:0:" in fresh.stdout


def test_copy_fallback_where_overlay_is_unavailable(runner, image):
    ok(runner("create", "box", image, env={"RURIPY_TEST_NO_OVERLAY": "1"}))
    cdir = runner.host_path("containers", "box")
    assert not os.path.exists(os.path.join(cdir, "upper"))
    assert os.path.isfile(os.path.join(cdir, "rootfs", "bin", "busybox"))
    c = listing(runner)["box"]
    assert c["storage"] == "copy"
    assert c["size"] > 500 * 1024  # the whole busybox tree
    rootfs = os.path.join(image_dir(runner, image), "rootfs")
    before = tree_digest(rootfs)
    ok(runner("run", "box", "sh", "-c", "echo hi > /new; rm /etc/group"))
    assert tree_digest(rootfs) == before
    assert os.path.exists(os.path.join(cdir, "rootfs", "new"))
    assert not os.path.lexists(os.path.join(cdir, "rootfs", "etc", "group"))


def test_list_shows_every_container_and_its_status(obox, image):
    r = obox
    ok(r("create", "two", image))
    ok(r("start", "two"))
    try:
        rows = listing(r)
        assert set(rows) == {"box", "two"}
        assert rows["box"]["status"] == "stopped"
        assert rows["two"]["status"] == "running"
        for row in rows.values():
            assert set(row) >= {"name", "image", "backend", "storage", "size", "status"}
        table = ok(r("list")).stdout.splitlines()
        assert table[0].split() == ["NAME", "IMAGE", "BACKEND", "STORAGE", "SIZE", "STATUS"]
        backend = "rootless" if r.rootless else "privileged"
        assert table[1].split()[:4] == ["box", image, backend, "overlay"]
        assert table[1].split()[-1] == "stopped"
        assert table[2].split()[-1] == "running"
        assert ok(r("ls")).stdout == ok(r("list")).stdout
    finally:
        ok(r("stop", "two"))
    assert listing(r)["two"]["status"] == "stopped"


def test_rmi_of_an_image_in_use_is_refused_naming_the_containers(obox, image):
    r = obox
    ok(r("create", "two", image))
    fails(r("rmi", image), image, "box", "two", "--force")
    assert ok(r("images", "--json")).stdout.count(f'"name": "{image}"') == 1
    ok(r("rm", "box", "two"))
    ok(r("rmi", image))
    assert json.loads(ok(r("images", "--json")).stdout) == []


def test_rmi_force_removes_the_image_and_warns(obox, image):
    p = ok(obox("rmi", "--force", image))
    assert "box" in p.stderr and "warning" in p.stderr
    fails(obox("run", "box", "true"))


# -- profiles ----------------------------------------------------------------------------------


def profile_path(r, name="box"):
    return r.host_path("containers", name, "profile.toml")


def test_config_shows_and_edits_the_profile(obox):
    r = obox
    shown = ok(r("config", "box")).stdout
    assert shown.startswith("# ruripy container profile")
    prof = json.loads(ok(r("config", "box", "--json")).stdout)
    assert prof["hostname"] is None and prof["net"] == "host" and prof["env"] == []
    ok(r("config", "box", "--set", "hostname=h1", "--set", "env=A=1,B=2", "--set", "read_only=yes"))
    prof = json.loads(ok(r("config", "box", "--json")).stdout)
    assert (prof["hostname"], prof["env"], prof["read_only"]) == ("h1", ["A=1", "B=2"], True)
    with open(profile_path(r)) as f:
        text = f.read()
    assert 'hostname = "h1"' in text and "read_only = true" in text
    assert stat.S_IMODE(os.stat(profile_path(r)).st_mode) == 0o600
    ok(r("config", "box", "--unset", "read_only", "--unset", "env"))
    prof = json.loads(ok(r("config", "box", "--json")).stdout)
    assert (prof["hostname"], prof["env"], prof["read_only"]) == ("h1", [], False)
    # A bad assignment changes nothing, and no temporary file is left beside the profile.
    fails(r("config", "box", "--set", "hostname=h2", "--set", "read_only=maybe"), "read_only")
    assert json.loads(ok(r("config", "box", "--json")).stdout)["hostname"] == "h1"
    fails(r("config", "box", "--set", "colour=red"), "colour")
    assert sorted(os.listdir(r.host_path("containers", "box"))) == [
        "container.rec",
        "profile.cache",
        "profile.toml",
        "rootfs",
        "upper",
        "work",
    ]
    assert ok(r("run", "box", "hostname")).stdout == "h1\n"


def test_run_options_override_the_profile_for_that_run_only(obox):
    r = obox
    ok(r("config", "box", "--set", "hostname=a", "--set", "env=X=profile"))
    assert ok(r("run", "--hostname", "b", "box", "hostname")).stdout == "b\n"
    assert ok(r("run", "box", "hostname")).stdout == "a\n"
    assert ok(r("run", "-e", "X=cli", "box", "sh", "-c", "echo $X")).stdout == "cli\n"
    assert ok(r("run", "box", "sh", "-c", "echo $X")).stdout == "profile\n"
    assert json.loads(ok(r("config", "box", "--json")).stdout)["hostname"] == "a"


def _write_as_owner(r, path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    if r.user:
        os.chown(path, r.user.pw_uid, r.user.pw_gid)
    future = time.time() + 2  # newer than profile.cache
    os.utime(path, (future, future))


@pytest.mark.parametrize(
    "text, words",
    [
        ('hostname = "x"\ncolour = "red"\n', ["profile.toml", "colour"]),
        ("read_only = 3\n", ["profile.toml", "read_only", "true or false"]),
        ('hostname = "x"\nenv = ["A=1"\n', ["profile.toml", "line 2", "invalid TOML"]),
    ],
    ids=["unknown-key", "wrong-type", "broken-toml"],
)
def test_a_bad_profile_names_the_key_or_line(obox, text, words):
    _write_as_owner(obox, profile_path(obox), text)
    for cmd in (("run", "box", "true"), ("config", "box"), ("start", "box")):
        fails(obox(*cmd), *words)
    assert "running" not in ok(obox("list")).stdout


def test_a_profile_writable_by_others_is_refused(obox):
    os.chmod(profile_path(obox), 0o666)
    fails(obox("run", "box", "true"), "profile.toml", "writable by other users")
    fails(obox("config", "box", "--json"), "writable by other users")
    os.chmod(profile_path(obox), 0o600)
    ok(obox("run", "box", "true"))


RURI_CONFIG = """\
container_dir="/somewhere/else"
hostname="ruri-host"
no_network="true"
work_dir="/tmp"
env=["A","1","B","2"]
use_kvm="true"
hidepid="2"
"""


@pytest.fixture
def confdir(runner, workdir):
    """A folder for config files that the runner's user trusts (root: root-owned only)."""
    if runner.rootless:
        yield workdir
        return
    d = tempfile.mkdtemp(prefix="conf.", dir=os.path.dirname(runner.home))
    yield d
    shutil.rmtree(d)


def _ruri_config(workdir):
    path = os.path.join(workdir, "box.conf")
    with open(path, "w") as f:
        f.write(RURI_CONFIG)
    os.chmod(path, 0o644)
    return path


@pytest.mark.parametrize("how", ["create", "import"])
def test_ruri_config_starts_the_profile_and_warns_per_key(runner, image, bb_tar, confdir, how):
    conf = _ruri_config(confdir)
    src = image if how == "create" else bb_tar
    p = ok(runner(how, "box", src, "--ruri-config", conf, "-e", "B=cli"))
    warnings = [line for line in p.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2, p.stderr
    assert any("use_kvm" in w for w in warnings) and any("hidepid" in w for w in warnings)
    prof = json.loads(ok(runner("config", "box", "--json")).stdout)
    assert prof["hostname"] == "ruri-host"
    assert prof["net"] == "none"
    assert prof["workdir"] == "/tmp"
    assert prof["env"] == ["A=1", "B=cli"]
    out = ok(runner("run", "box", "sh", "-c", "hostname; pwd; echo $A$B; ls /sys/class/net"))
    assert out.stdout.split() == ["ruri-host", "/tmp", "1cli", "lo"]


def test_a_broken_ruri_config_makes_nothing(runner, image, confdir):
    path = os.path.join(confdir, "bad.conf")
    with open(path, "w") as f:
        f.write('hostname="x"\nno_network=true\n')
    fails(runner("create", "box", image, "--ruri-config", path), "bad.conf", "line 2")
    assert listing(runner) == {}


# -- rm, rename, clone ---------------------------------------------------------------------------


def test_rm_rename_clone_refuse_a_running_container_unless_forced(obox):
    r = obox
    ok(r("start", "box"))
    fails(r("rm", "box"), "box is running", "--force")
    fails(r("rename", "box", "b2"), "box is running", "--force")
    fails(r("clone", "box", "b2"), "box is running", "--force")
    assert set(listing(r)) == {"box"}
    ok(r("clone", "--force", "box", "b2"))
    ok(r("rename", "--force", "box", "b3"))
    assert set(ps(r)) == {"b3"}
    assert ok(r("exec", "b3", "echo", "still here")).stdout == "still here\n"
    ok(r("rm", "--force", "b3"))
    assert set(listing(r)) == {"b2"}
    assert ps(r) == {}
    assert not os.listdir(r.host_path("state"))


def test_rename_moves_the_container_and_keeps_its_files(obox):
    r = obox
    ok(r("run", "box", "sh", "-c", "echo kept > /root/f"))
    ok(r("config", "box", "--set", "hostname=named"))
    ok(r("rename", "box", "new.name"))
    assert set(listing(r)) == {"new.name"}
    out = ok(r("run", "new.name", "sh", "-c", "cat /root/f; hostname")).stdout
    assert out == "kept\nnamed\n"
    fails(r("run", "box", "true"), "no such container: box")


def test_clone_of_an_overlay_copies_only_the_upper_layer(obox):
    r = obox
    ok(r("run", "box", "sh", "-c", "echo mine > /root/f; rm /etc/group; mkdir -p /d/e"))
    t0 = time.monotonic()
    ok(r("clone", "box", "copy"))
    assert time.monotonic() - t0 < 2.0
    cdir = r.host_path("containers", "copy")
    assert disk_usage(cdir) < 128 * 1024
    assert listing(r)["copy"]["storage"] == "overlay"
    out = ok(r("run", "copy", "sh", "-c", "cat /root/f; ls /etc/group 2>&1; ls -d /d/e"))
    assert out.stdout.splitlines()[0] == "mine"
    assert "No such file" in out.stdout and "/d/e" in out.stdout
    # The two are independent from now on.
    ok(r("run", "copy", "sh", "-c", "echo theirs > /root/f"))
    assert ok(r("run", "box", "cat", "/root/f")).stdout == "mine\n"
    assert json.loads(ok(r("config", "copy", "--json")).stdout) == json.loads(
        ok(r("config", "box", "--json")).stdout
    )


def test_clone_of_a_copy_container_copies_its_root(runner, image):
    ok(runner("create", "box", image, env={"RURIPY_TEST_NO_OVERLAY": "1"}))
    ok(runner("run", "box", "sh", "-c", "echo mine > /root/f"))
    ok(runner("clone", "box", "copy"))
    assert listing(runner)["copy"]["storage"] == "copy"
    assert ok(runner("run", "copy", "cat", "/root/f")).stdout == "mine\n"


BAD_NAMES = ["../x", "a/b", "", "a" * 65, ".hidden", "a b", "x\n"]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=lambda n: repr(n)[:12])
def test_invalid_names_are_refused_before_any_file_is_touched(obox, image, bad):
    r = obox
    before = tree_digest(r.home)
    for args in (
        ("create", bad, image),
        ("rename", "box", bad),
        ("rename", bad, "box2"),
        ("clone", "box", bad),
        ("clone", bad, "box2"),
        ("rm", bad),
        ("run", bad, "true"),
        ("exec", bad, "true"),
        ("start", bad),
        ("stop", bad),
        ("config", bad),
    ):
        fails(r(*args), "invalid container name")
    assert tree_digest(r.home) == before


def test_name_errors_are_clear_and_change_nothing(obox, image):
    r = obox
    ok(r("create", "other", image))
    before = tree_digest(r.home)
    fails(r("rename", "box", "other"), "container other already exists")
    fails(r("rename", "nope", "x"), "no such container: nope")
    fails(r("clone", "nope", "x"), "no such container: nope")
    fails(r("clone", "box", "other"), "container other already exists")
    fails(r("rm", "nope"), "no such container: nope")
    fails(r("create", "box", image), "container box already exists")
    fails(r("create", "x", "no-such-image"), "no such image")
    fails(r("stop", "nope"), "no such container: nope")
    assert tree_digest(r.home) == before
    assert set(listing(r)) == {"box", "other"}


def test_rm_of_several_names_reports_each_failure(obox):
    p = obox("rm", "nope", "box")
    fails(p, "no such container: nope")
    assert listing(obox) == {}


# -- parallel commands and kill -9 ---------------------------------------------------------------


def test_parallel_creates_of_one_name_exactly_one_succeeds(runner, image):
    procs = [
        runner.popen("create", "same", image, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    results = [(p.wait(60), p.stderr.read().decode()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert sorted(code for code, _ in results) == [0, 125, 125, 125], results
    for code, err in results:
        if code:
            assert "container same already exists" in err
    assert set(listing(runner)) == {"same"}
    ok(runner("run", "same", "true"))
    assert os.listdir(runner.host_path("tmp")) == []


def test_parallel_rename_and_rm_of_one_name_are_serialised(obox, image):
    r = obox
    for _ in range(3):
        procs = [
            r.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for args in (("rename", "box", "moved"), ("rm", "box"), ("rename", "box", "other"))
        ]
        codes = [p.wait(60) for p in procs]
        for p in procs:
            p.stderr.close()
        assert codes.count(0) == 1, codes
        names = set(listing(r))
        assert len(names) == 1 and names <= {"box", "moved", "other"} or names == set()
        for n in names:
            ok(r("rm", n))
        ok(r("create", "box", image))


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3, 0.5, 0.8])
def test_kill_9_in_the_middle_of_create_blocks_nothing(runner, image, delay):
    p = runner.popen("create", "box", image, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    _kill_ruripy(p)
    names = listing(runner)
    if "box" in names:  # it finished before the kill: a complete container
        ok(runner("run", "box", "true"))
        ok(runner("rm", "box"))
    ok(runner("create", "box", image))
    ok(runner("run", "box", "true"))
    assert os.listdir(runner.host_path("tmp")) == []


@pytest.mark.parametrize("what", ["create", "clone", "rm"])
def test_kill_9_with_a_staging_folder_in_tmp_blocks_nothing(runner, image, what):
    """Killed while its staging folder exists (a copy-create, clone or rm in progress)."""
    no_overlay = {"RURIPY_TEST_NO_OVERLAY": "1"}
    if what != "create":
        ok(runner("create", "src", image, env=no_overlay))
    args = {
        "create": ("create", "box", image),
        "clone": ("clone", "src", "box"),
        "rm": ("rm", "src"),
    }[what]
    tmp = runner.host_path("tmp")
    p = runner.popen(*args, env=no_overlay, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: os.listdir(tmp) or p.poll() is not None, timeout=30, step=0.001)
    _kill_ruripy(p)
    left = os.listdir(tmp)
    names = set(listing(runner))
    # Whatever the moment, the name is either complete or absent, and nothing blocks it.
    assert names <= {"src", "box"}
    for n in names:
        ok(runner("run", n, "true"))
    if what == "rm" and "src" in names:
        ok(runner("rm", "src"))
    if what != "rm":
        if "box" in names:
            ok(runner("rm", "box"))
        ok(runner(*args, env=no_overlay))
        ok(runner("run", "box", "true"))
    assert os.listdir(tmp) == [], (left, os.listdir(tmp))


def _kill_ruripy(p: subprocess.Popen) -> None:
    """kill -9 the ruripy process itself (below runuser/env), then reap the wrapper."""
    target = _ruripy_pid(p.pid)
    if target:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait(30)


def _ruripy_pid(pid: int) -> int | None:
    """The python process running ruripy at or below `pid` (runuser and env exec or fork)."""
    for _ in range(4):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except FileNotFoundError:
            return None
        if b"ruripy" in cmd and b"-m" in cmd and b"python" in cmd[0]:
            return pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
        except FileNotFoundError:
            return None
        if not kids:
            return None
        pid = int(kids[0])
    return None


def test_state_lives_in_the_store_never_in_the_rootfs(obox, image):
    r = obox
    rootfs = os.path.join(image_dir(r, image), "rootfs")
    before = tree_digest(rootfs)
    ok(r("start", "box"))
    try:
        assert os.listdir(r.host_path("state")) == ["box.rec"]
        assert wait_for(lambda: ps(r).get("box"))
        assert not os.path.exists(upper(r, "box", ".rurienv"))
        found = ok(r("exec", "box", "find", "/", "-xdev", "-name", "*.rec")).stdout
        assert found == ""
    finally:
        ok(r("stop", "box"))
    assert tree_digest(rootfs) == before
    assert os.listdir(r.host_path("state")) == []


# -- export ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "running"])
def test_export_writes_the_container_root_with_its_changes(obox, workdir, running):
    r = obox
    ok(r("run", "box", "sh", "-c", "echo mine > /root/new; rm /etc/group"))
    if running:
        ok(r("start", "box"))
    try:
        dest = os.path.join(workdir, "box.tar.gz")
        ok(r("export", "box", dest))
        with tarfile.open(dest) as t:
            names = {n.removeprefix("./") for n in t.getnames()}
            assert t.extractfile("./root/new").read() == b"mine\n"
        assert {"bin/busybox", "etc/passwd", "root/new"} <= names
        assert "etc/group" not in names
        assert not [n for n in os.listdir(workdir) if ".part" in n]
        streamed = r("export", "box", "-", input=b"")  # bytes in, bytes out
        assert streamed.returncode == 0, streamed.stderr
        streamed = streamed.stdout
        with tarfile.open(fileobj=io.BytesIO(streamed)) as t:
            assert {n.removeprefix("./") for n in t.getnames()} == names
    finally:
        if running:
            ok(r("stop", "box"))
