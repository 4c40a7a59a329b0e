"""The proot backend: Debian's proot on the busybox rootfs, as the test user and as root.

Every test drives the real CLI (tests/conftest.py runners). proot gives no isolation, so
the checks are about what a user sees: the root, the user, the environment, binds, exit
statuses, the warning for what proot cannot honour, sessions, ps/stop, and `auto` falling
back to proot when the kernel refuses user namespaces.
"""

import os
import shutil
import subprocess
import time

import pytest

PROOT = shutil.which("proot") or "/usr/bin/proot"

pytestmark = pytest.mark.skipif(
    not os.access(PROOT, os.X_OK), reason="proot is not installed (apt-get install proot)"
)


@pytest.fixture
def pbox(runner, rootfs_dir):
    """Container 'box' (busybox, copy storage) whose profile says --backend proot."""
    r = runner("import", "box", rootfs_dir, "--backend", "proot")
    assert r.returncode == 0, r.stderr
    return runner


def _ps(runner) -> list:
    import json

    r = runner("ps", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _wait_for(pred, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out")


# -- exit statuses ------------------------------------------------------------------------


def test_exit_status_is_the_commands(pbox):
    r = pbox("run", "box", "--", "sh", "-c", "exit 3")
    assert (r.returncode, r.stderr) == (3, "")


def test_killed_by_signal_gives_128_plus_n(pbox):
    # Debian's proot alone would say 0 here (the status of `ls`, the last normal exit).
    r = pbox("run", "box", "sh", "-c", "ls / >/dev/null; kill -9 $$")
    assert (r.returncode, r.stderr) == (137, "")


def test_background_processes_end_with_the_command(pbox):
    """Like pid 1 in a namespace: the session ends when the command does, and proot's
    'last process to exit' status does not replace the command's."""
    t = time.monotonic()
    r = pbox("run", "box", "sh", "-c", "(sleep 31; exit 0) & exit 4")
    assert r.returncode == 4
    assert time.monotonic() - t < 15
    # ... and nothing of it is left (no stopped subshell reparented to the host's init).
    assert _processes_with(b"sleep 31") == []


def _processes_with(marker: bytes) -> list[int]:
    found = []
    for e in os.listdir("/proc"):
        try:
            with open(f"/proc/{e}/cmdline", "rb") as f:
                if e.isdigit() and marker in f.read():
                    found.append(int(e))
        except OSError:
            pass
    return found


def test_missing_command_127(pbox):
    r = pbox("run", "box", "no-such-program")
    assert r.returncode == 127
    assert r.stderr == "ruripy: no-such-program: command not found in the container.\n"


def test_not_executable_126(pbox):
    r = pbox("run", "box", "/etc/passwd")
    assert r.returncode == 126
    assert r.stderr == "ruripy: /etc/passwd: cannot run it: Permission denied.\n"


def test_bad_workdir_125(pbox):
    r = pbox("run", "-w", "/no/such/dir", "box", "true")
    assert r.returncode == 125
    assert r.stderr == (
        "ruripy: cannot use working directory /no/such/dir: No such file or directory.\n"
    )


# -- the view from inside -------------------------------------------------------------------


def test_root_user_workdir_and_environment(pbox):
    r = pbox(
        "run", "-e", "FOO=bar", "box", "sh", "-c",
        "id -u; id -g; pwd; env | sort; ls /bin/busybox",
        env={"SECRET_TOKEN": "x"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == ["0", "0", "/root"]
    env = dict(line.split("=", 1) for line in lines[3:-1] if "=" in line)
    assert env["FOO"] == "bar"
    assert env["HOME"] == "/root"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["LANG"] == "C.UTF-8"
    assert env["container"] == "ruripy"
    assert "SECRET_TOKEN" not in env
    assert lines[-1] == "/bin/busybox"


def test_user_and_workdir_options(pbox):
    r = pbox("run", "-u", "user", "-w", "/tmp", "box", "sh", "-c", "id -u; id -g; pwd; echo $HOME")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["1000", "1000", "/tmp", "/home/user"]
    r = pbox("run", "-u", "nosuchuser", "box", "true")
    assert r.returncode == 125
    assert r.stderr == "ruripy: no user 'nosuchuser' in the container's /etc/passwd.\n"


def test_default_is_a_login_shell(pbox):
    r = pbox("run", "box", input="echo $0; exit 5\n")
    assert r.returncode == 5
    assert r.stdout == "/bin/sh\n"


def test_host_dev_proc_sys_and_resolv_conf(pbox):
    r = pbox(
        "run", "box", "sh", "-c",
        "dd if=/dev/zero bs=1024 count=4 2>/dev/null | wc -c; ls /proc/self/fd >/dev/null "
        "&& echo proc; ls -d /sys/kernel; cat /etc/resolv.conf",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == ["4096", "proc", "/sys/kernel"]
    if os.path.isfile("/etc/resolv.conf"):
        with open("/etc/resolv.conf") as f:
            assert "\n".join(lines[3:]) == f.read().rstrip("\n")


def test_bind_mounts(pbox, workdir):
    src = os.path.join(workdir, "shared")
    os.mkdir(src)
    with open(os.path.join(src, "hello"), "w") as f:
        f.write("from the host\n")
    os.chmod(src, 0o777)
    r = pbox("run", "-b", f"{src}:/mnt/data", "box", "sh", "-c", "cat /mnt/data/hello")
    assert (r.returncode, r.stdout) == (0, "from the host\n"), r.stderr
    r = pbox("run", "-b", f"{workdir}/missing:/mnt/x", "box", "true")
    assert r.returncode == 125
    assert "bind source" in r.stderr and "missing" in r.stderr


def test_unhonoured_options_are_listed_once(pbox):
    r = pbox(
        "run", "--net", "none", "--read-only", "--cap-drop", "ALL", "--hostname", "h1",
        "box", "sh", "-c", "echo ran",
    )  # fmt: skip
    assert r.returncode == 0
    assert r.stdout == "ran\n"
    assert r.stderr == (
        "ruripy: warning: the proot backend cannot honour --net none, --read-only, "
        "--cap-drop ALL, --hostname h1; running without.\n"
    )


def test_tty_gives_a_new_pty(pbox):
    r = pbox("run", "-t", "box", "sh", "-c", "tty; exit 6")
    assert r.returncode == 6
    assert r.stdout.startswith("/dev/pts/")


# -- sessions -----------------------------------------------------------------------------


def test_exec_is_a_new_session_and_says_so(pbox):
    r = pbox("exec", "box", "sh", "-c", "echo in-exec; exit 2")
    assert (r.returncode, r.stdout) == (2, "in-exec\n")
    assert r.stderr == (
        "ruripy: note: proot has no namespaces to join; this is a new proot session in box.\n"
    )


def test_start_is_refused(pbox):
    r = pbox("start", "box")
    assert r.returncode == 125
    assert r.stderr == (
        "ruripy: the proot backend cannot keep box running in the background (proot has no "
        "init to keep); use 'ruripy run box': each run and exec is its own proot session.\n"
    )


def test_ps_stop_and_a_second_run(pbox):
    p = pbox.popen("run", "box", "sleep", "300", stdin=subprocess.DEVNULL)
    try:
        rows = _wait_for(lambda: [r for r in _ps(pbox) if r["name"] == "box"])
        assert rows[0]["backend"] == "proot"
        # run on a running proot container: a new session, not a join
        r = pbox("run", "box", "sh", "-c", "echo second")
        assert r.returncode == 0 and r.stdout == "second\n"
        assert "new proot session" in r.stderr
        r = pbox("stop", "box", "--time", "5")
        assert r.returncode == 0, r.stderr
        assert p.wait(timeout=30) == 143  # sleep got the SIGTERM
        assert [r for r in _ps(pbox) if r["name"] == "box"] == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_overlay_container_is_refused(runner, rootfs_dir, workdir):
    tarball = os.path.join(workdir, "bb.tar")
    subprocess.run(["tar", "-C", rootfs_dir, "-cf", tarball, "."], check=True)
    os.chmod(tarball, 0o644)
    assert runner("pull", "--quiet", tarball).returncode == 0
    r = runner("create", "ov", "bb")
    assert r.returncode == 0, r.stderr
    r = runner("list", "--json")
    import json

    storage = {c["name"]: c["storage"] for c in json.loads(r.stdout)}["ov"]
    r = runner("run", "--backend", "proot", "ov", "true")
    if storage != "overlay":
        assert r.returncode == 0, r.stderr
        pytest.skip("this host made a copy, not an overlay")
    assert r.returncode == 125
    assert r.stderr.startswith(
        "ruripy: container ov uses overlay storage, which the proot backend cannot mount;"
    )


# -- auto falls back to proot ---------------------------------------------------------------


def test_auto_falls_back_to_proot_when_userns_is_refused(rootless, rootfs_dir):
    assert rootless("import", "box", rootfs_dir).returncode == 0
    r = rootless.without_userns("run", "box", "sh", "-c", "echo via-proot; exit 3")
    assert (r.returncode, r.stdout) == (3, "via-proot\n"), r.stderr
    # Remembered for this boot: the next run goes straight to proot, with nothing said.
    r = rootless.without_userns("run", "box", "sh", "-c", "echo again")
    assert (r.returncode, r.stdout, r.stderr) == (0, "again\n", "")
    assert os.path.exists(rootless.host_path("cache", "userns-blocked"))
    r = rootless.without_userns("exec", "box", "true")
    assert r.returncode == 0
    assert "new proot session" in r.stderr
    # --backend rootless is not rerouted
    r = rootless.without_userns("run", "--backend", "rootless", "box", "true")
    assert r.returncode == 125 and "user namespace" in r.stderr


def test_auto_stays_rootless_when_userns_works(rootless, rootfs_dir):
    assert rootless("import", "box", rootfs_dir).returncode == 0
    r = rootless("run", "box", "sh", "-c", "cat /proc/self/uid_map | wc -l")
    assert r.returncode == 0 and r.stdout.strip() in ("1", "2")
    assert not os.path.exists(rootless.host_path("cache", "userns-blocked"))


# -- units ----------------------------------------------------------------------------------


def test_features_are_read_from_help_and_cached(tmp_path):
    from ruripy.sandbox import proot

    feats = proot.features(PROOT, str(tmp_path))
    # Debian's proot 5.1 has neither; Termux's has both.
    assert feats <= {"--link2symlink", "--kill-on-exit"}
    assert (tmp_path / "proot.rec").exists()
    assert proot.features(PROOT, str(tmp_path)) == feats


def test_unhonoured_lists_non_defaults_only():
    from ruripy import options
    from ruripy.sandbox import proot

    assert proot.unhonoured(options.defaults()) == []
    cfg = dict(options.defaults(), seccomp="/x.json", deny_syscall=["ptrace"])
    cfg["bind"] = ["/a:/b:ro", "/c:/d"]
    assert proot.unhonoured(cfg) == [
        "--seccomp /x.json",
        "--deny-syscall ptrace",
        "read-only binds (/a:/b:ro)",
    ]


def test_no_user_namespaces_import_then_proot_run(rootless, rootfs_dir):
    """A host without user namespaces (Termux): import copies as the plain user with one
    warning, and `run` falls back to proot."""
    r = rootless.without_userns("import", "box", rootfs_dir)
    assert r.returncode == 0, r.stderr
    assert r.stderr == (
        "ruripy: warning: user namespaces are unavailable here, so files keep your own id "
        "and containers run with the proot backend ('ruripy doctor' says why).\n"
    )
    st = os.stat(os.path.join(rootless.home, "containers", "box", "rootfs", "bin", "busybox"))
    assert st.st_uid == rootless.user.pw_uid
    r = rootless.without_userns("run", "box", "sh", "-c", "echo inside; exit 4")
    assert r.returncode == 4, r.stderr
    assert r.stdout == "inside\n"
