"""Shell completion: the committed scripts match the CLI, the `__complete` fast path answers
from a real store without typer, and real bash, zsh and fish complete what a user types."""

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

import pytest
from conftest import REPO, TEST_ROOT, Runner, busybox_rootfs

from ruripy import completion

BASH_FILE = os.path.join(REPO, "completions", "ruripy.bash")
ZSH_DIR = os.path.join(REPO, "completions")
FISH_FILE = os.path.join(REPO, "completions", "ruripy.fish")


@pytest.fixture(scope="module")
def tree():
    return completion.tree()


@pytest.mark.parametrize("shell", completion.SHELLS)
def test_committed_file_is_current(shell, tree):
    path = os.path.join(REPO, "completions", completion.FILES[shell])
    with open(path) as f:
        committed = f.read()
    assert committed == completion.generate(shell, tree), (
        f"{path} is stale: run 'python -m ruripy.completion --write' and commit it"
    )


def test_every_command_and_option_is_in_the_scripts(tree):
    with open(BASH_FILE) as f:
        text = f.read()
    for c in tree["commands"]:
        assert c["name"] in text
        for o in c["options"]:
            for n in o["names"]:
                assert n in text, (c["name"], n)


# -- a store with containers and an image, and a `ruripy` on PATH -----------------------------


@pytest.fixture(scope="module")
def store(src_copy):
    """Root's store with image bb-1.0 and containers box1, box2, web (box2 running)."""
    if os.geteuid() != 0:
        pytest.skip("the completion store is built as root")
    base = tempfile.mkdtemp(prefix="complete.", dir=TEST_ROOT)
    home = os.path.join(base, "home")
    run = Runner(src_copy, home, None)
    root = busybox_rootfs(os.path.join(base, "rootfs"))
    tarball = os.path.join(base, "bb-1.0.tar")
    with tarfile.open(tarball, "w") as t:
        t.add(root, arcname=".")
    r = run("pull", tarball, "--quiet")
    assert r.returncode == 0, r.stderr
    for name in ("box1", "box2", "web"):
        r = run("create", name, "bb-1.0")
        assert r.returncode == 0, r.stderr
    r = run("start", "box2")
    assert r.returncode == 0, r.stderr
    bindir = os.path.join(base, "bin")
    os.mkdir(bindir)
    exe = os.path.join(bindir, "ruripy")
    with open(exe, "w") as f:
        f.write(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {src_copy!r})\n"
            "from ruripy.__main__ import main\nmain()\n"
        )
    os.chmod(exe, 0o755)
    env = run.env({"PATH": bindir + ":" + run.env()["PATH"], "TERM": "dumb"})
    yield {"run": run, "env": env, "base": base, "tarball": tarball}
    run("stop", "box2", "--time", "1")
    subprocess.run(["rm", "-rf", "--one-file-system", base], check=False)


def complete(store, *args):
    return subprocess.run(
        ["ruripy", "__complete", *args],
        env=store["env"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_fast_path_lists_containers_images_and_catalog(store):
    assert complete(store, "containers").stdout.split() == ["box1", "box2", "web"]
    assert complete(store, "containers", "b").stdout.split() == ["box1", "box2"]
    assert complete(store, "running").stdout.split() == ["box2"]
    assert complete(store, "images").stdout.split() == ["bb-1.0"]
    cat = complete(store, "catalog", "debian").stdout.split()
    assert "debian" in cat and "debian:bookworm" in cat
    assert all(n.startswith("debian") for n in cat)


def test_fast_path_does_not_import_typer(store):
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ruripy", "__complete", "containers"],
        env=store["env"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines()}
    heavy = {m for m in imported if m.split(".")[0] in ("typer", "click", "rich", "pydantic")}
    assert not heavy, heavy


@pytest.mark.parametrize("args", [[], ["nosuch"], ["containers", "x" * 5000]])
def test_fast_path_is_silent_on_nonsense(store, args):
    r = complete(store, *args)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_fast_path_is_silent_on_a_broken_store(store, workdir):
    bad = os.path.join(workdir, "not-a-folder")
    with open(bad, "w") as f:
        f.write("x")
    env = dict(store["env"], RURIPY_HOME=bad)
    for kind in completion.DYNAMIC[:-1]:
        r = subprocess.run(["ruripy", "__complete", kind], env=env, capture_output=True, text=True)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_fast_path_creates_no_store(rootless):
    r = rootless("__complete", "containers")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = rootless("__complete", "running")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert os.listdir(rootless.home) == []


def test_completion_command_prints_the_scripts(store):
    for shell in completion.SHELLS:
        r = store["run"]("completion", shell)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(REPO, "completions", completion.FILES[shell])) as f:
            assert r.stdout == f.read()
    r = store["run"]("completion", "tcsh")
    assert r.returncode == 125
    assert r.stderr == "ruripy: unknown shell 'tcsh'; use one of bash, zsh, fish.\n"


# -- bash: the completion function driven as bash drives it ----------------------------------

BASH_CASES = [
    ("ruripy r", ["rmi", "run", "rm", "rename"]),
    ("ruripy --", ["--version", "--quiet", "--help"]),
    ("ruripy -q run b", ["box1", "box2"]),  # a global flag before the command
    ("ruripy run ", ["box1", "box2", "web"]),
    ("ruripy run b", ["box1", "box2"]),
    ("ruripy run -t b", ["box1", "box2"]),  # -t is --tty for run: no value
    ("ruripy run --net none ", ["box1", "box2", "web"]),
    ("ruripy run box1 ", []),  # the container's own command: not ours to guess
    ("ruripy run box1 ls -", []),
    ("ruripy run -- box1 ", []),
    ("ruripy exec ", ["box2"]),
    ("ruripy stop ", ["box2"]),
    ("ruripy start w", ["web"]),
    ("ruripy stop -t ", []),  # -t is --time for stop: a number
    ("ruripy stop -t 5 ", ["box2"]),
    ("ruripy stop --t", ["--time"]),
    ("ruripy run --net ", ["host", "none"]),
    ("ruripy run --net=n", ["none"]),
    ("ruripy run --backend r", ["rootless"]),
    ("ruripy run --cap-add NET_R", ["NET_RAW"]),
    ("ruripy pull --arch arm", ["arm64", "armhf", "armel"]),
    ("ruripy create x ", ["bb-1.0"]),
    ("ruripy create ", []),  # a new name
    ("ruripy rmi ", ["bb-1.0"]),
    ("ruripy rm box1 w", ["web"]),
    ("ruripy rename box1 ", []),
    ("ruripy pull debian:book", ["bookworm"]),  # bash's word starts after the colon
    ("ruripy pull debian:", ["trixie", "bookworm", "bullseye", "forky", "sid"]),
    ("ruripy config box1 --set read", ["read_only="]),
    ("ruripy config box1 --unset cap_", ["cap_add", "cap_drop"]),
    ("ruripy completion ", ["bash", "zsh", "fish"]),
    ("ruripy nosuch ", []),
]


def bash_complete(env: dict, lines: list[str]) -> list[list[str]]:
    script = [f"source {BASH_FILE}"]
    for line in lines:
        q = "'" + line.replace("'", "'\\''") + "'"
        script.append(
            f'COMP_LINE={q}; COMP_POINT=${{#COMP_LINE}}; read -ra COMP_WORDS <<<"$COMP_LINE"; '
            'COMP_CWORD=${#COMP_WORDS[@]}; [[ $COMP_LINE == *" " ]] || ((COMP_CWORD--)); '
            "COMPREPLY=(); _ruripy; printf '%s\\x1f' \"${COMPREPLY[@]}\"; printf '\\n'"
        )
    r = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", "\n".join(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return [[w for w in out.split("\x1f") if w] for out in r.stdout.split("\n")[: len(lines)]]


def test_bash_completes(store):
    got = bash_complete(store["env"], [line for line, _ in BASH_CASES])
    assert dict(zip([c[0] for c in BASH_CASES], got, strict=True)) == dict(BASH_CASES)


def test_bash_completes_files(store):
    base = store["base"]
    got = bash_complete(
        store["env"],
        [
            f"ruripy import x {base}/bb-",
            f"ruripy pull {base}/bb-",
            f"ruripy export box1 {base}/bb-1",
            f"ruripy run --bind={base}/bb-",
            f"ruripy run --seccomp {base}/bb-",
            "ruripy run --seccomp d",
        ],
    )
    tar = store["tarball"]
    assert got[:5] == [[tar]] * 3 + [[tar], [tar]]
    assert got[5][:1] == ["default"]


def test_bash_offers_every_option_of_a_command(store, tree):
    lines = [f"ruripy {c['name']} -" for c in tree["commands"]]
    for c, got in zip(tree["commands"], bash_complete(store["env"], lines), strict=True):
        assert got == [n for o in c["options"] for n in o["names"]], c["name"]


# -- interactive shells on a terminal ---------------------------------------------------------


def type_in(argv: list[str], setup: list[str], typed: str, env: dict, settle=1.0) -> str:
    """Start an interactive shell on a pty, run `setup`, type `typed`; the screen after it."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execvpe(argv[0], argv, env)
    out = b""

    def read(seconds: float, until: bytes | None = None) -> None:
        nonlocal out
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if until is not None and until in out:
                return
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    return

    try:
        for line in setup + ["echo READY''"]:
            os.write(fd, line.encode() + b"\n")
        read(20, b"READY\r\n")
        mark = len(out)
        os.write(fd, typed.encode())
        read(settle)
        return out[mark:].decode(errors="replace")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def test_bash_on_a_terminal(store):
    env = dict(store["env"], PS1="$ ", INPUTRC="/dev/null")
    setup = [
        f"source {BASH_FILE}",
        "bind 'set show-all-if-ambiguous on'",
        "bind 'set bell-style none'",
    ]
    argv = ["bash", "--norc", "--noprofile", "-i"]
    assert "ruripy pull debian:bookworm " in type_in(argv, setup, "ruripy pull debian:boo\t", env)
    screen = type_in(argv, setup, "ruripy run b\t", env)
    assert "box1" in screen and "box2" in screen and "web" not in screen
    assert "ruripy run --net=none " in type_in(argv, setup, "ruripy run --net=n\t", env)


def zsh_type(store, typed: str) -> str:
    if not shutil.which("zsh"):
        pytest.skip("zsh is not installed (apt-get install zsh)")
    env = dict(store["env"], PS1="$ ")
    setup = [
        f"fpath=({ZSH_DIR} $fpath); autoload -U compinit; compinit -u -D",
        "unsetopt beep; setopt autolist",
    ]
    return type_in(["zsh", "-f", "-i"], setup, typed, env)


@pytest.mark.parametrize(
    "typed, shown, absent",
    [
        ("ruripy pull debian:boo\t", ["debian:bookworm "], []),
        ("ruripy ren\t", ["ruripy rename "], []),
        ("ruripy r\t", ["rmi", "run", "rename", "Rename a stopped container"], ["pull "]),
        ("ruripy run b\t\t", ["box1", "box2"], ["web"]),
        ("ruripy exec \t", ["ruripy exec box2 "], []),
        ("ruripy create x \t", ["ruripy create x bb-1.0 "], []),
        ("ruripy run --net \t", ["host", "none"], []),
        ("ruripy run --backend r\t", ["--backend rootless "], []),
        ("ruripy config box1 --set rea\t", ["--set read_only="], ["read_only= "]),
        ("ruripy stop -\t", ["--time", "Seconds to wait before SIGKILL"], ["--net"]),
    ],
)
def test_zsh_on_a_terminal(store, typed, shown, absent):
    screen = zsh_type(store, typed)
    for s in shown:
        assert s in screen, screen
    for s in absent:
        assert s not in screen, screen


def fish_complete(store, line: str) -> list[str]:
    if not shutil.which("fish"):
        pytest.skip("fish is not installed (apt-get install fish)")
    r = subprocess.run(
        ["fish", "--no-config", "-c", f"source {FISH_FILE}; complete -C {line!r}"],
        env=store["env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return [x.split("\t")[0] for x in r.stdout.splitlines()]


@pytest.mark.parametrize(
    "line, expected",
    [
        ("ruripy ren", ["rename"]),
        ("ruripy run ", ["box1", "box2", "web"]),
        ("ruripy run b", ["box1", "box2"]),
        ("ruripy run box1 ", []),
        ("ruripy exec ", ["box2"]),
        ("ruripy run --net ", ["host", "none"]),
        ("ruripy run --net=n", ["--net=none"]),
        ("ruripy stop -t ", []),
        ("ruripy stop --t", ["--time"]),
        ("ruripy create x ", ["bb-1.0"]),
        ("ruripy pull debian:b", ["debian:bookworm", "debian:bullseye"]),
        ("ruripy config box1 --unset cap_", ["cap_add", "cap_drop"]),
        ("ruripy completion ", ["bash", "fish", "zsh"]),
    ],
)
def test_fish_completes(store, line, expected):
    assert sorted(fish_complete(store, line)) == sorted(expected)


def test_fish_completes_files(store):
    tar = store["tarball"]
    assert fish_complete(store, f"ruripy pull {tar[:-6]}") == [tar]
    assert fish_complete(store, f"ruripy import x {tar[:-6]}") == [tar]
