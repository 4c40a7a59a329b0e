"""`ruripy run`: entering a rootfs rootless and privileged, as a user sees it.

Every test drives the real CLI (tests/conftest.py runners) on a busybox rootfs.
"""

import os
import pwd
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import TEST_ROOT, Runner, busybox_rootfs

pytest.register_assert_rewrite("boxes")
from boxes import in_pty  # noqa: E402


def _subuid_start(user: str) -> int:
    with open("/etc/subuid") as f:
        for line in f:
            name, start, _ = line.strip().split(":")
            if name == user:
                return int(start)
    raise AssertionError(f"{user} has no /etc/subuid range")


def host_mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


# -- exit statuses ------------------------------------------------------------------------


def test_exit_status_is_the_commands(box):
    assert box("run", "box", "--", "sh", "-c", "exit 3").returncode == 3


def test_killed_by_signal_gives_128_plus_n(box):
    assert box("run", "box", "sh", "-c", "kill -9 $$").returncode == 137


def test_missing_command_127(box):
    r = box("run", "box", "no-such-program")
    assert r.returncode == 127
    assert r.stderr == "ruripy: no-such-program: command not found in the container.\n"


def test_not_executable_126(box):
    r = box("run", "box", "/etc/passwd")
    assert r.returncode == 126
    assert r.stderr == "ruripy: /etc/passwd: cannot run it: Permission denied.\n"


def test_no_such_container_125(runner):
    r = runner("run", "nobox", "true")
    assert r.returncode == 125
    assert r.stderr == "ruripy: no such container: nobox. 'ruripy list' shows your containers.\n"


def test_default_is_a_login_shell(box):
    r = box("run", "box", input="echo shell:$0; exit 4\n")
    assert r.returncode == 4
    assert "shell:" in r.stdout and "sh" in r.stdout


# -- the view from inside -------------------------------------------------------------------


def test_dev_holds_only_the_allowed_nodes(box):
    r = box("run", "box", "ls", "/dev")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == sorted(
        "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero".split()
    )
    r = box("run", "box", "sh", "-c", "echo hi > /dev/null && head -c 4 /dev/zero | wc -c")
    assert r.stdout.strip() == "4"


def test_proc_is_fresh_with_masks(box):
    script = (
        "ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '; echo;"
        "wc -c < /proc/keys; ls /proc/acpi | wc -l;"
        "echo 1 > /proc/sys/kernel/domainname 2>&1 || echo ro-sys;"
        "umount /proc/keys 2>/dev/null || echo cannot-umount"
    )
    r = box("run", "box", "sh", "-c", script)
    lines = r.stdout.splitlines()
    pids = [int(p) for p in lines[0].split()]
    assert pids[0] == 1 and max(pids) < 10  # only the container's own processes
    assert lines[1].strip() == "0"
    assert lines[2].strip() == "0"
    assert "ro-sys" in r.stdout
    assert "cannot-umount" in r.stdout


def test_sys_is_read_only(box):
    r = box("run", "box", "sh", "-c", "mkdir /sys/fs/x 2>&1; touch /sys/kernel/x 2>&1; echo done")
    assert "Read-only file system" in r.stdout
    assert r.stdout.strip().endswith("done")


def test_pid_namespace_with_init_as_pid_1(box):
    r = box("run", "box", "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
    pid, cmdline = r.stdout.splitlines()
    assert pid == "2"
    assert "ruripy" in cmdline


def test_init_reaps_orphans(box):
    # The inner shell exits at once, leaving sleep orphaned to pid 1, which must reap it.
    script = "sh -c 'sleep 0.2 &'; sleep 0.8; ps -o stat,comm | grep -c '^Z' || true"
    r = box("run", "box", "sh", "-c", script)
    assert r.stdout.strip() == "0"


def test_signals_sent_with_kill_reach_the_command(box):
    p = box.popen("run", "box", "sleep", "30", stdin=subprocess.DEVNULL)
    time.sleep(1.5)
    # runuser forks: the CLI is its child (env execs it); as root env execs it directly.
    target = _child_of(p.pid) if box.rootless else p.pid
    os.kill(target, signal.SIGTERM)
    assert p.wait(timeout=20) == 143


def _child_of(pid: int) -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                return int(entry)
    raise AssertionError(f"process {pid} has no child")


def test_capabilities_no_new_privs_and_clean_signals(box):
    r = box("run", "box", "grep", "-E", "^(Cap|NoNewPrivs|SigIgn|SigBlk)", "/proc/self/status")
    f = dict(line.split(":\t") for line in r.stdout.splitlines())
    assert f["CapInh"] == f["CapAmb"] == "0000000000000000"
    expected = "00000000a80425fb" if box.rootless else "00000000a00425fb"  # no MKNOD as root
    assert f["CapBnd"] == f["CapEff"] == f["CapPrm"] == expected
    assert f["NoNewPrivs"] == "1"
    assert f["SigIgn"] == f["SigBlk"] == "0000000000000000"


def test_clean_environment_plus_env(box):
    r = box(
        "run",
        "box",
        "-e",
        "FOO=bar baz",
        "--env",
        "LANG=de_DE.UTF-8",
        "env",
        env={"SECRET_TOKEN": "x", "TERM": "vt100"},
    )
    got = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert got == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "TERM": "vt100",
        "LANG": "de_DE.UTF-8",
        "USER": "root",
        "container": "ruripy",
        "FOO": "bar baz",
    }


def test_user_workdir_hostname(box):
    r = box(
        "run",
        "box",
        "-u",
        "user",
        "-w",
        "/tmp",
        "--hostname",
        "inside",
        "sh",
        "-c",
        "id; pwd; hostname; grep CapEff /proc/self/status",
    )
    lines = r.stdout.splitlines()
    assert lines[0] == "uid=1000(user) gid=1000(user) groups=100(users),1000(user)"
    assert lines[1:3] == ["/tmp", "inside"]
    assert lines[3] == "CapEff:\t0000000000000000"
    assert os.uname().nodename != "inside"
    r = box("run", "box", "--user", "1:100", "id")
    assert r.stdout.strip() == "uid=1(daemon) gid=100(users) groups=100(users)"
    r = box("run", "box", "-u", "nosuchuser", "true")
    assert r.returncode == 125
    assert "no user 'nosuchuser'" in r.stderr


def test_bind_mounts(box, workdir):
    src = os.path.join(workdir, "share")
    os.mkdir(src)
    with open(os.path.join(src, "hello"), "w") as f:
        f.write("from the host\n")
    os.chmod(src, 0o777)
    r = box(
        "run",
        "box",
        "-b",
        f"{src}:/mnt/data",
        "--bind",
        f"{src}:/mnt/ro:ro",
        "sh",
        "-c",
        "cat /mnt/data/hello; echo x > /mnt/data/new && echo wrote;"
        "echo y > /mnt/ro/other 2>/dev/null || echo refused",
    )
    assert r.stdout.splitlines() == ["from the host", "wrote", "refused"], r.stderr
    assert os.path.exists(os.path.join(src, "new"))
    assert not os.path.exists(os.path.join(src, "other"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["-b", "/no/such/dir:/mnt"], "ruripy: bind source /no/such/dir cannot be used"),
        (["-b", "relative:/mnt"], "ruripy: --bind:"),
        (["-e", "1BAD=x"], "ruripy: --env:"),
        (["--net", "bogus"], "ruripy: --net:"),
        (["--frobnicate"], "ruripy: unknown option --frobnicate for run"),
    ],
)
def test_bad_options_are_refused(box, args, message):
    before = host_mounts()
    r = box("run", "box", *args, "true")
    assert r.returncode == 125
    assert r.stderr.startswith(message), r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert host_mounts() == before


def test_read_only_root(box):
    r = box(
        "run", "box", "--read-only", "sh", "-c", "touch /x 2>&1; touch /dev/shm/ok && echo shm-ok"
    )
    assert "Read-only file system" in r.stdout
    assert "shm-ok" in r.stdout


def test_net_none_has_only_loopback(box):
    r = box("run", "box", "--net", "none", "sh", "-c", "ls /sys/class/net; ifconfig lo | head -1")
    assert r.stdout.split()[0] == "lo"
    assert len(r.stdout.splitlines()[0].split()) == 1
    assert "UP" in box("run", "box", "--net", "none", "ifconfig", "lo").stdout


def test_unmask_leaves_proc_unmasked(box):
    masked = box("run", "box", "cat", "/proc/self/mountinfo").stdout
    plain = box("run", "box", "--unmask", "cat", "/proc/self/mountinfo").stdout
    assert " /proc/acpi " in masked
    assert " /proc/acpi " not in plain


def test_pivot_root_hides_the_host(box, workdir):
    sentinel = os.path.join(workdir, "host-sentinel")
    open(sentinel, "w").close()
    r = box("run", "box", "sh", "-c", f"ls {sentinel} 2>&1; cd /; cd ../../..; ls")
    assert "No such file" in r.stdout
    assert "bin" in r.stdout.split() and "home" in r.stdout.split()


@pytest.mark.parametrize("special", ["proc", "sys", "dev"])
def test_symlinked_special_dir_is_refused(runner, workdir, special):
    rootfs = busybox_rootfs(os.path.join(workdir, "evil"))
    outside = os.path.join(workdir, "outside")
    os.mkdir(outside)
    with open(os.path.join(outside, "marker"), "w") as f:
        f.write("untouched")
    os.rmdir(os.path.join(rootfs, special))
    os.symlink(outside, os.path.join(rootfs, special))
    subprocess.run(["chmod", "-R", "a+rX", workdir], check=True)
    assert runner("import", "evil", rootfs).returncode == 0
    before = host_mounts()
    r = runner("run", "evil", "true")
    assert r.returncode == 125
    assert r.stderr == (
        f"ruripy: the container's /{special} is not a folder (a symlink or a file); "
        "refusing to start, it could point outside the rootfs.\n"
    )
    assert os.listdir(outside) == ["marker"]
    assert host_mounts() == before


def test_no_mount_is_left_on_the_host(box):
    before = host_mounts()
    box("run", "box", "true")
    assert host_mounts() == before
    assert box.home not in host_mounts()


# -- rootless specifics -------------------------------------------------------------------------


def test_rootless_maps_the_subuid_range(rootless, rootfs_dir):
    assert rootless("import", "box", rootfs_dir).returncode == 0
    r = rootless(
        "run",
        "box",
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; "
        "touch /home/f && chown 100:100 /home/f && echo chowned",
    )
    uid = rootless.user.pw_uid
    start = _subuid_start(rootless.user.pw_name)
    rows = [line.split() for line in r.stdout.splitlines()[:4]]
    assert rows[0] == ["0", str(uid), "1"] and rows[1] == ["1", str(start), "65536"]
    assert r.stdout.splitlines()[-1] == "chowned"
    st = os.stat(os.path.join(rootless.home, "containers", "box", "rootfs", "home", "f"))
    assert (st.st_uid, st.st_gid) == (start + 99, start + 99)


def test_rootless_single_id_fallback(src_copy, workdir, request):
    try:
        pw = pwd.getpwnam("ruripy-nosub")
    except KeyError:
        pytest.skip("user ruripy-nosub is missing: run tests/setup.sh as root")
    # Not below workdir: that belongs to the other test user, and profiles below folders
    # another user owns are refused.
    home = tempfile.mkdtemp(prefix="home-nosub.", dir=TEST_ROOT)
    request.addfinalizer(lambda: subprocess.run(["rm", "-rf", home], check=False))
    os.chown(home, pw.pw_uid, pw.pw_gid)
    nosub = Runner(src_copy, home, pw)
    rootfs = busybox_rootfs(os.path.join(workdir, "rootfs-nosub"), (pw.pw_uid, pw.pw_gid))
    r = nosub("import", "box", rootfs)
    assert r.returncode == 0, r.stderr
    r = nosub("run", "box", "sh", "-c", "cat /proc/self/uid_map /proc/self/setgroups; id -u")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["0", str(pw.pw_uid), "1"]
    assert lines[1] == "deny"
    assert lines[2] == "0"
    warn = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warn) == 1 and "no /etc/subuid and /etc/subgid range" in warn[0]


def test_missing_newuidmap_is_explained(rootless, rootfs_dir):
    assert rootless("import", "box", rootfs_dir).returncode == 0
    hide = " && ".join(f"mount --bind /dev/null /usr/bin/{p}" for p in ("newuidmap", "newgidmap"))
    argv = rootless.argv("run", "box", "true")
    cmd = f"{hide} && exec {' '.join(_quote(a) for a in argv)}"
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c", cmd],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 125
    assert r.stderr == (
        "ruripy: newuidmap and newgidmap are missing; install them "
        "('sudo apt-get install uidmap') to map your /etc/subuid range.\n"
    )


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def test_user_namespaces_refused_is_explained(rootless, rootfs_dir):
    """A kernel that refuses user namespaces: a clear one-line error, nothing mounted."""
    assert rootless("import", "box", rootfs_dir).returncode == 0
    before = host_mounts()
    r = rootless.without_userns("run", "--backend", "rootless", "box", "true", timeout=60)
    assert r.returncode == 125
    assert r.stderr.startswith("ruripy: ") and len(r.stderr.splitlines()) == 1
    assert "user namespace" in r.stderr
    assert host_mounts() == before


def test_userns_reason_names_the_sysctl(tmp_path):
    from ruripy.sandbox import idmap

    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "max_user_namespaces").write_text("0\n")
    assert idmap.userns_unavailable_reason(str(tmp_path)) == (
        "the kernel does not allow user namespaces "
        f"({tmp_path}/user/max_user_namespaces is 0); "
        "run 'sudo sysctl user.max_user_namespaces=15000'."
    )


# -- privileged specifics -----------------------------------------------------------------------


def test_privileged_layout(privileged, rootfs_dir):
    assert privileged("import", "box", rootfs_dir).returncode == 0
    r = privileged(
        "run",
        "box",
        "sh",
        "-c",
        "awk '$5 == \"/\"' /proc/self/mountinfo; ls -l /dev/null; "
        "awk '$5 == \"/sys\"' /proc/self/mountinfo; mknod /tmp/sda b 8 0 2>&1 || true",
    )
    lines = r.stdout.splitlines()
    assert "nodev" in lines[0].split(" - ")[0]
    assert lines[1].startswith("crw-rw-rw-") and "1,   3" in lines[1]
    assert " - sysfs " in lines[2] and " ro," in lines[2]
    assert "Operation not permitted" in lines[3]


# -- terminals ---------------------------------------------------------------------------------


def test_tty_gives_a_new_pty(box):
    code, out = in_pty(box.argv("run", "-t", "box", "sh", "-c", "tty; exit 9"), b"")
    assert code == 9
    assert b"/dev/pts/0" in out


def test_shared_terminal_job_control(box):
    # Without -t the caller's terminal is shared: the shell sees a terminal and exits as told.
    code, out = in_pty(box.argv("run", "box", "sh", "-c", "[ -t 0 ] && echo is-a-tty; exit 5"), b"")
    assert code == 5
    assert b"is-a-tty" in out


def test_run_path_imports_only_the_standard_library(src_copy):
    code = (
        "import sys; sys.argv=['ruripy','run']; "
        "import ruripy.__main__ as m, ruripy.lifecycle, ruripy.running; "
        "bad=[n for n in ('typer','rich','requests','zstandard','click','pydantic','tomllib',"
        "'subprocess','json','re','ctypes','warnings') if n in sys.modules]; print(bad)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src_copy, "PATH": "/usr/bin:/bin"},
    )
    assert r.stdout.strip() == "[]", r.stderr
