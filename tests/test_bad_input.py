"""Bad input: empty, garbage and boundary values for every option and argument of every
command, generated from the click command tree and the runtime option table (the way
systemd-nspawn's test suite feeds nspawn), against a real store.

Every case must end with status 125 (or 0 for --help), one or two lines on stderr each
starting with "ruripy: ", nothing on stdout, no traceback, and no change to the store or
the working folder. The cases run through the real entry point (ruripy.__main__.main, so
run and exec take their argv fast path) in a driver that imports ruripy once and forks a
child per case: the whole matrix takes seconds instead of a typer start per case.
"""

import json
import os
import subprocess
import sys
import tarfile
import tempfile

import pytest
from conftest import TEST_ROOT, Runner, busybox_rootfs
from lxcmirror import MirrorServer

from ruripy import options

# Positional arguments that make each command fail for want of the thing they name.
BASE = {
    "pull": ["file:/nonexistent/bad.tar"],
    "rmi": ["nosuch-image"],
    "search": ["zzz-no-such-distro"],
    "create": ["newbox", "nosuch-image"],
    "import": ["newbox", "/nonexistent/rootfs.tar"],
    "export": ["nosuch", "out.tar"],
    "exec": ["nosuch", "true"],
    "rename": ["nosuch", "newname"],
    "clone": ["nosuch", "newname"],
    "completion": ["bash"],
}
PATH_ARGS = {("import", "source"), ("pull", "image"), ("export", "file")}
VALUES = [
    "", " ", "-1", "0", "18446744073709551617", "nan", "1e999", "\x01", "a\nb",
    "../../../../etc/passwd", "x" * 4097, "é", "%n$(id)",
]  # fmt: skip
NAME_VALUES = [
    "", " ", "-", "..", "../escape", "a/b", "x" * 65, ".hidden", "\x01", "a\nb", "é", "*",
    "/etc",
]  # fmt: skip

DRIVER = r"""
import hashlib, json, os, signal, sys, tempfile, time
import ruripy.__main__, ruripy.cli  # imported once; every case forks from here

# Warm up: parse a bad option once here, so what typer imports lazily (pydantic, rich) is
# imported before the forks instead of in every child.
try:
    ruripy.cli.app(["stop", "x", "--time", "bad"], prog_name="ruripy", standalone_mode=False)
except BaseException:
    pass
import ruripy.containers, ruripy.lifecycle, ruripy.images.pull, ruripy.images.install

def snapshot(top):
    out = {}
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, top)
            if os.path.islink(p) or os.path.isdir(p):
                out[rel] = "link" if os.path.islink(p) else "dir"
            elif n.endswith(".cache"):
                out[rel] = "cache"  # a read may refresh it
            else:
                with open(p, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out

job = json.load(sys.stdin)
home, cwd = job["home"], os.getcwd()
results = []
for args in job["cases"]:
    before, before_cwd = snapshot(home), sorted(os.listdir(cwd))
    t0 = time.monotonic()
    out_f, err_f = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            signal.alarm(30)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(out_f.fileno(), 1)
            os.dup2(err_f.fileno(), 2)
            sys.argv = ["ruripy", *args]
            # what a re-execution (root's sealed copy of the interpreter) runs again
            sys.orig_argv = [sys.executable, "-m", "ruripy", *args]
            try:
                ruripy.__main__.main()
                code = 0
            except SystemExit as e:
                if isinstance(e.code, str):
                    sys.stderr.write(e.code + "\n")
                    code = 1
                else:
                    code = e.code or 0
        finally:
            try:
                sys.stdout.flush(); sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    out_f.seek(0); err_f.seek(0)
    after = snapshot(home)
    results.append({
        "args": args,
        "status": os.waitstatus_to_exitcode(status),
        "seconds": round(time.monotonic() - t0, 3),
        "stdout": out_f.read().decode("utf-8", "replace"),
        "stderr": err_f.read().decode("utf-8", "replace"),
        "store": sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)),
        "cwd": sorted(set(os.listdir(cwd)) ^ set(before_cwd)),
    })
json.dump(results, sys.stdout)
"""


def command_tree() -> list[tuple[str, list, list]]:
    """(name, arguments, options) of every command, from typer's click tree."""
    import typer._click as click
    import typer.main

    from ruripy.cli import app

    group = typer.main.get_command(app)
    ctx = click.Context(group, info_name="ruripy", **group.context_settings)
    out = []
    for name in group.list_commands(ctx):
        cmd = group.commands[name]
        sub = click.Context(cmd, info_name=name, parent=ctx, **cmd.context_settings)
        params = cmd.get_params(sub)
        args = [p for p in params if p.param_type_name == "argument"]
        opts = [p for p in params if p.param_type_name == "option" and "--help" not in p.opts]
        out.append((name, args, opts))
    return out


def cases_for(name: str, args: list, opts: list, full: bool = True) -> list[list[str]]:
    """Invocations of command `name` that must all fail cleanly."""
    base = BASE.get(name) or ["nosuch" for a in args if a.required]
    cases = []
    if any(a.required for a in args):
        cases.append([name])  # missing arguments
    cases.append([name, *base, "--no-such-option"])
    cases.append([name, *base, "-Z"])
    if not any(a.nargs == -1 for a in args):
        cases.append([name, *base, "extra1", "extra2"])
    for i, arg in enumerate(args[: len(base)]):
        values = NAME_VALUES if full else NAME_VALUES[:4]
        if (name, arg.name) in PATH_ARGS:  # existing folders are fine sources
            values = [v for v in values if v not in ("..", "/etc")]
        for v in values:
            cases.append([name, *base[:i], v, *base[i + 1 :]])
    for o in opts:
        long = max(o.opts, key=len)
        if o.is_flag:
            cases.append([name, *base, f"{long}=garbage"])
            continue
        cases.append([name, *base, long])  # the value is missing
        for v in VALUES if full else VALUES[:3]:
            cases.append([name, *base, long, v])
        cases.append([name, *base, f"{long}=\x01"])
        for short in (n for n in o.opts if len(n) == 2):
            cases.append([name, *base, short, "\x01"])
    return cases


def existing_cases() -> list[list[str]]:
    """Against the existing container `box` and image `bb-1.0`: invalid values only."""
    cases = [
        ["create", "box", "bb-1.0"],  # exists
        ["import", "box", "/nonexistent"],
        ["import", "newbox", ".."],  # holds the store (the working folder is beside it)
        ["import", "newbox", "../home"],  # the store itself
        ["import", "newbox", "../home/containers/box/rootfs"],  # inside the store
        ["rename", "box", "box"],
        ["rename", "box", ""],
        ["rename", "box", "../x"],
        ["clone", "box", "box"],
        ["clone", "box", "a/b"],
        ["export", "box", ""],
        ["export", "box", "/nonexistent/dir/out.tar"],
        ["export", "box", "out.rar"],
        ["pull", "file:/nonexistent.tar", "--name", "box"],
        ["config", "box", "--unset", "nokey"],
        ["config", "box", "--set", "nokey=1"],
        ["rmi", "bb-1.0"],  # box uses it
    ]
    for assignment in (
        "", "=", "=1", "read_only=maybe", "memory=-1", "memory=0", "cpus=0", "cpus=nan",
        "pids_limit=0", "cap_add=NOPE", "env=1A=x", "bind=relative:/x", "bind=/a:/",
        "user=a:b:c", "hostname=-bad", "seccomp=/", "arch=vax", "backend=docker", "net=bridge",
        "workdir=relative", "deny_syscall=no such", "command='unclosed", "tty=2",
    ):  # fmt: skip
        cases.append(["config", "box", "--set", assignment])
    for opt in options.CLI_OPTIONS:
        if opt.kind == "bool":
            cases.append(["run", "box", f"{opt.long}=maybe", "true"])
        else:
            for v in ("", "\x01", "../x" if opt.key != "seccomp" else "/"):
                cases.append(["run", "box", opt.long, v, "true"])
    for v in ("", "a:b:c", "-1:-1"):
        cases.append(["exec", "box", "--user", v, "true"])
    cases.append(["exec", "box", "--net", "none", "true"])  # not an exec option
    cases.append(["exec", "box"])  # no command
    return cases


# -- the store and the driver -----------------------------------------------------------------


class Store:
    def __init__(self, runner: Runner, base: str, cwd: str) -> None:
        self.runner = runner
        self.base = base
        self.cwd = cwd
        # An LXC image server on loopback that has nothing: search and pull fail at once.
        os.mkdir(os.path.join(base, "mirror"))
        self.mirror = MirrorServer(os.path.join(base, "mirror")).start()

    def run_cases(self, cases: list[list[str]]) -> list[dict]:
        env = self.runner.env({"RURIPY_LXC_MIRROR": self.mirror.url})
        env.pop("RURIPY_DEBUG", None)
        argv = [sys.executable, "-c", DRIVER]
        if self.runner.user:
            envargs = [f"{k}={v}" for k, v in env.items()]
            argv = ["runuser", "-u", self.runner.user.pw_name, "--", "env", "-i", *envargs, *argv]
            env = None
        r = subprocess.run(
            argv,
            input=json.dumps({"home": self.runner.home, "cases": cases}),
            env=env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout)


def make_store(src_copy: str, user) -> Store:
    base = tempfile.mkdtemp(prefix="badinput.", dir=TEST_ROOT)
    os.chmod(base, 0o755)
    home, cwd = os.path.join(base, "home"), os.path.join(base, "cwd")
    os.mkdir(cwd)
    root = busybox_rootfs(os.path.join(base, "rootfs"))
    tarball = os.path.join(base, "bb-1.0.tar")
    with tarfile.open(tarball, "w") as t:
        t.add(root, arcname=".")
    if user:
        os.mkdir(home, 0o700)
        for p in (home, cwd):
            os.chown(p, user.pw_uid, user.pw_gid)
    runner = Runner(src_copy, home, user)
    for args in (("pull", tarball, "--quiet"), ("create", "box", "bb-1.0")):
        r = runner(*args)
        assert r.returncode == 0, r.stderr
    return Store(runner, base, cwd)


@pytest.fixture(scope="module")
def root_store(src_copy):
    if os.geteuid() != 0:
        pytest.skip("the bad-input store is built as root")
    store = make_store(src_copy, None)
    yield store
    store.mirror.stop()
    subprocess.run(["rm", "-rf", "--one-file-system", store.base], check=False)


@pytest.fixture(scope="module")
def user_store(src_copy, test_user):
    store = make_store(src_copy, test_user)
    yield store
    store.mirror.stop()
    subprocess.run(["rm", "-rf", "--one-file-system", store.base], check=False)


def problems(result: dict) -> list[str]:
    """What is wrong with how one bad invocation ended (empty: nothing)."""
    found = []
    out, err = result["stdout"], result["stderr"]
    if result["status"] != 125:
        found.append(f"status {result['status']}")
    if "Traceback" in out + err:
        found.append("a traceback")
    lines = err.splitlines()
    if not 1 <= len(lines) <= 2 or not all(line.startswith("ruripy: ") for line in lines):
        found.append(f"stderr is not one or two 'ruripy: ' lines: {err[:300]!r}")
    if out:
        found.append(f"stdout: {out[:200]!r}")
    if result["store"]:
        found.append(f"store changed: {result['store'][:5]}")
    if result["cwd"]:
        found.append(f"working folder changed: {result['cwd'][:5]}")
    return found


def assert_all_fail_cleanly(results: list[dict]) -> None:
    bad = [(r["args"], p) for r in results if (p := problems(r))]
    report = "\n".join(f"{[a[:40] for a in args]}: {'; '.join(p)}" for args, p in bad[:40])
    assert not bad, f"{len(bad)} of {len(results)} cases:\n{report}"


# -- the tests ----------------------------------------------------------------------------------

TREE = command_tree()


@pytest.mark.parametrize("name", [c[0] for c in TREE])
def test_every_option_and_argument(root_store, name):
    _, args, opts = next(c for c in TREE if c[0] == name)
    assert_all_fail_cleanly(root_store.run_cases(cases_for(name, args, opts)))


def test_existing_container_and_image(root_store):
    assert_all_fail_cleanly(root_store.run_cases(existing_cases()))


def test_as_the_unprivileged_user(user_store):
    cases = [c for name, args, opts in TREE for c in cases_for(name, args, opts, full=False)]
    assert_all_fail_cleanly(user_store.run_cases(cases + existing_cases()))


def test_help_and_no_arguments(root_store):
    cases = [[]] + [[name, "--help"] for name, _, _ in TREE] + [["--help"], ["-h"]]
    for r in root_store.run_cases(cases):
        assert r["status"] == 0, r
        assert r["stderr"] == "" and "Usage" in r["stdout"], r
        assert not r["store"] and not r["cwd"]


def test_the_cases_cover_the_tree():
    """Every option of every command gets a missing, an empty and a garbage value; the
    runtime option table reaches create, import and run whole."""
    for name, args, opts in TREE:
        cases = cases_for(name, args, opts)
        for o in opts:
            long = max(o.opts, key=len)
            if o.is_flag:
                assert any(c[-1] == f"{long}=garbage" for c in cases), (name, long)
            else:
                assert any(c[-2:] == [long, ""] for c in cases), (name, long)
                assert any(c[-1] == long for c in cases), (name, long)
        if name in ("create", "import", "run"):
            for opt in options.CLI_OPTIONS:
                assert any(p.name == "opt_" + opt.key for p in opts), (name, opt.key)
