"""`ruripy doctor`: the real checks on this machine, as root and as the unprivileged test user
(and as a user without /etc/subuid ranges), the JSON document, and nothing left behind."""

import json
import os
import pwd
import shutil
import struct
import subprocess

import pytest
from conftest import Runner, without_userns_argv

from ruripy import doctor

NAMES = [
    "userns", "newuidmap", "newgidmap", "subuid", "subgid", "idmap", "overlay", "storage",
    "pidfd", "openat2", "libseccomp", "cgroup", "proot", "qemu-user", "binfmt_misc", "backend",
]  # fmt: skip


def lines_by_name(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        parts = line.split(None, 2)
        if parts and parts[0] in ("OK", "WARN", "FAIL"):
            out[parts[1]] = line
    return out


def check_report(r) -> dict[str, str]:
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    by = lines_by_name(r.stdout)
    assert list(by) == NAMES
    # every line is a check, or the fix of the check just above it (never of an OK one)
    for prev, line in zip(lines, lines[1:], strict=False):
        if line.lstrip().startswith("fix: "):
            assert not prev.startswith("OK"), prev
            assert not prev.lstrip().startswith("fix: ")
    for line in lines:
        if line.startswith(("WARN", "FAIL")):
            assert lines[lines.index(line) + 1].lstrip().startswith("fix: "), line
    return by


def test_as_root(privileged):
    by = check_report(privileged("doctor"))
    assert by["userns"].startswith("OK    userns       a user namespace can be created")
    assert by["newuidmap"] == "OK    newuidmap    /usr/bin/newuidmap is setuid root"
    assert by["newgidmap"] == "OK    newgidmap    /usr/bin/newgidmap is setuid root"
    assert by["idmap"] == (
        "OK    idmap        not needed as root (the privileged backend maps nothing)"
    )
    assert by["overlay"].startswith(
        f"OK    overlay      overlayfs mounts as root on {privileged.home}"
    )
    assert by["storage"].startswith(f"OK    storage      {privileged.home} exists")
    assert by["pidfd"].startswith("OK    pidfd")
    assert by["openat2"].startswith("OK    openat2")
    assert by["libseccomp"].startswith("OK    libseccomp   libseccomp 2.")
    assert by["cgroup"].endswith(": --memory, --cpus, --pids-limit can be applied")
    assert by["backend"] == "OK    backend      auto picks privileged (you are root)"


def test_as_the_test_user(rootless):
    by = check_report(rootless("doctor"))
    user = rootless.user.pw_name
    assert by["userns"].startswith("OK    userns       a user namespace can be created")
    assert by["subuid"].startswith(f"OK    subuid       {user} has 65536 uids from ")
    assert by["subgid"].startswith(f"OK    subgid       {user} has 65536 gids from ")
    assert by["idmap"] == (
        "OK    idmap        your id and 65536 more mapped through newuidmap and newgidmap"
    )
    assert by["overlay"] == (
        f"OK    overlay      overlayfs mounts in a user namespace on {rootless.home} (ext4)"
    )
    assert by["cgroup"].startswith("WARN  cgroup")  # nothing delegated to the test user
    assert "--memory, --cpus, --pids-limit cannot be applied here" in by["cgroup"]
    assert by["backend"] == "OK    backend      auto picks rootless (user namespaces work)"


def test_leaves_nothing_behind(rootless):
    assert rootless("doctor").returncode == 0
    assert os.listdir(rootless.home) == []


def test_a_user_without_subordinate_ids(src_copy, workdir):
    """nobody has no /etc/subuid range: the id lines warn and say what to run."""
    if os.geteuid() != 0:
        pytest.skip("switching to nobody needs root")
    nobody = pwd.getpwnam("nobody")
    home = os.path.join(workdir, "home-nobody")
    os.mkdir(home, 0o700)
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    r = Runner(src_copy, home, nobody)("doctor")
    by = check_report(r)
    assert by["subuid"].startswith("WARN  subuid       no range for nobody in /etc/subuid")
    assert "fix: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 nobody" in (
        r.stdout
    )
    assert by["idmap"].startswith("WARN  idmap        only your own id is mapped")
    assert by["backend"].startswith("OK    backend      auto picks rootless")


def test_json_document(runner):
    r = runner("doctor", "--json")
    assert r.returncode == 0 and r.stderr == ""
    doc = json.loads(r.stdout)
    assert set(doc) == {"checks", "ok"}
    assert isinstance(doc["ok"], bool)
    assert [c["name"] for c in doc["checks"]] == NAMES
    for c in doc["checks"]:
        assert set(c) == {"name", "status", "detail", "fix"}
        assert c["status"] in ("OK", "WARN", "FAIL")
        assert isinstance(c["detail"], str) and c["detail"]
        assert (c["fix"] is None) == (c["status"] == "OK"), c
    assert doc["ok"] == all(c["status"] != "FAIL" for c in doc["checks"])
    assert doc["ok"] is True  # this machine runs containers both ways
    # the same findings as the text report
    text = lines_by_name(runner("doctor").stdout)
    for c in doc["checks"]:
        if c["name"] not in ("storage", "overlay"):
            assert text[c["name"]].split(None, 2)[2] == c["detail"]


def test_file_capabilities_count_like_setuid(workdir):
    """A newuidmap without the setuid bit fails; with cap_setuid in security.capability
    (what 'setcap cap_setuid=ep' writes) it passes."""
    if os.geteuid() != 0:
        pytest.skip("writing security.capability needs root")
    path = os.path.join(workdir, "newuidmap")
    shutil.copyfile("/usr/bin/newuidmap", path)
    os.chmod(path, 0o755)
    c = doctor.check_newidmap("newuidmap", path)
    assert (c.status, c.fix) == (
        "WARN",
        f"sudo chmod u+s {path} (or: sudo setcap cap_setuid=ep {path})",
    )
    # struct vfs_cap_data, revision 2: magic|effective, then (permitted, inheritable) x 2
    os.setxattr(path, "security.capability", struct.pack("<5I", 0x02000001, 1 << 7, 0, 0, 0))
    c = doctor.check_newidmap("newuidmap", path)
    assert (c.status, c.detail) == ("OK", f"{path} has the file capability cap_setuid")
    assert doctor.check_newidmap("newgidmap", path).status == "WARN"  # cap_setgid is missing


def test_a_host_without_user_namespaces(rootless):
    if not shutil.which("proot"):
        pytest.skip("proot is not installed (apt-get install proot)")
    r = subprocess.run(
        [*without_userns_argv(rootless.src), *rootless.argv("doctor")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    by = check_report(r)
    assert by["userns"].startswith("WARN  userns       creating a user namespace failed")
    assert by["idmap"] == (
        "WARN  idmap        ids cannot be mapped without user namespaces (see the userns line)"
    )
    assert by["overlay"].startswith("WARN  overlay      overlayfs cannot be tried without")
    assert by["backend"].startswith("WARN  backend      auto picks proot for run and exec")
    assert "pull, create and import unpack as your own user" in by["backend"]
