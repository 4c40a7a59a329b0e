"""Everyday use through the installed entry point (a console script, not `python -m`),
progress on stderr (a bar on a terminal, one line per step without one), and --quiet."""

import os
import subprocess
import sys
import tarfile

import pytest
from conftest import REPO, busybox_rootfs
from lxcmirror import MirrorServer, build_mirror

pytest.register_assert_rewrite("boxes")
from boxes import in_pty  # noqa: E402


@pytest.fixture
def script(runner, workdir):
    """`ruripy` as pip installs it: a script whose shebang is the interpreter."""
    path = os.path.join(workdir, "ruripy")
    with open(path, "w") as f:
        f.write(
            f"#!{sys.executable}\nimport sys\nfrom ruripy.__main__ import main\nsys.exit(main())\n"
        )
    os.chmod(path, 0o755)

    def call(*args: str, text: bool = True) -> subprocess.CompletedProcess:
        env = runner.env()
        argv = [path, *args]
        if runner.user:
            envargs = [f"{k}={v}" for k, v in env.items()]
            argv = ["runuser", "-u", runner.user.pw_name, "--", "env", "-i", *envargs, *argv]
            env = None
        return subprocess.run(
            argv, env=env, cwd=workdir, capture_output=True, text=text, timeout=120
        )

    call.runner = runner
    call.path = path
    return call


@pytest.fixture
def tarball(workdir):
    root = busybox_rootfs(os.path.join(workdir, "tree"))
    path = os.path.join(workdir, "bb-1.0.tar.gz")
    with tarfile.open(path, "w:gz") as t:
        t.add(root, arcname=".")
    os.chmod(path, 0o644)
    return path


def test_run_through_the_console_script(script, tarball):
    """The quick start: the script, not runpy, is what users run (runpy imports modules
    that the container's side of run must not import late)."""
    r = script("import", "box", tarball)
    assert r.returncode == 0, r.stderr
    r = script("run", "box", "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
    r = script("-q", "run", "box", "sh", "-c", "exit 7")
    assert (r.returncode, r.stderr) == (7, "")
    r = script("run", "box", "no-such-command")
    assert r.returncode == 127


def test_progress_lines_without_a_terminal(script, tarball, workdir):
    r = script("import", "box", tarball)
    assert r.returncode == 0 and r.stdout == "box\n"
    size = os.path.getsize(tarball) / 1000 / 1000
    assert r.stderr == f"Importing bb-1.0.tar.gz ({size:.1f} MB)\n"
    out = os.path.join(workdir, "box.tar.zst")
    r = script("export", "box", out)
    assert r.returncode == 0 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0] == f"Exporting box to {out}"
    assert lines[1].startswith("Exported box: ") and " entries, " in lines[1]
    assert len(lines) == 2
    r = script("export", "box", "-", text=False)
    assert r.returncode == 0 and r.stdout[257:262] == b"ustar"  # a tar on stdout
    assert r.stderr.decode().splitlines()[0] == "Exporting box"


def test_quiet_silences_progress(script, tarball, workdir):
    for args in (
        ("--quiet", "pull", tarball),
        ("-q", "import", "box", tarball),
        ("-q", "export", "box", os.path.join(workdir, "box.tar")),
        ("pull", "--quiet", tarball),
    ):
        r = script(*args)
        assert (r.returncode, r.stderr) == (0, ""), args
    with tarfile.open(os.path.join(workdir, "box.tar")) as t:
        assert "./bin/busybox" in t.getnames()


def test_a_bar_on_a_terminal(privileged, tarball):
    """On a terminal the pull shows a live bar (rich) on stderr, and ends with a summary."""
    argv = privileged.argv("pull", tarball, env={"TERM": "xterm", "COLUMNS": "100"})
    code, out = in_pty(argv, b"", timeout=60)
    text = out.decode(errors="replace")
    assert code == 0, text
    assert "━" in text  # rich's bar
    assert "Pulled bb-1.0" in text


def readme_quick_start() -> list[str]:
    """The command lines of the README's Quick start block, comments removed."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    block = text.split("\n## Quick start\n", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_quick_start_works_as_written(script, workdir):
    """Every line of the Quick start, in order, against a loopback LXC image server."""
    root = os.path.join(workdir, "mirror")
    build_mirror(root)
    lines = readme_quick_start()
    assert lines[0] == "ruripy doctor" and "ruripy rm deb" in lines
    bindir = os.path.dirname(script.path)
    with MirrorServer(root) as mirror:
        env = script.runner.env({"RURIPY_LXC_MIRROR": mirror.url})
        env["PATH"] = bindir + ":" + env["PATH"]
        for line in lines:
            argv = ["sh", "-c", line]
            run_env = env
            if script.runner.user:
                envargs = [f"{k}={v}" for k, v in env.items()]
                argv = ["runuser", "-u", script.runner.user.pw_name, "--", "env", "-i"]
                argv += [*envargs, "sh", "-c", line]
                run_env = None
            r = subprocess.run(
                argv, env=run_env, cwd=workdir, capture_output=True, text=True, timeout=120
            )
            assert r.returncode == 0, (line, r.stderr)
            if line.startswith("ruripy run deb -- cat"):
                assert "ID=" in r.stdout or r.stdout.strip(), r.stdout
    assert os.path.exists(os.path.join(workdir, "deb.tar.gz"))
