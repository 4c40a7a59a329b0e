"""How long one TAB takes: the bash completion function from completions/ruripy.bash, run in
a real bash against a fresh store with 20 containers and one image.

    python bench/completion.py [-n RUNS]

Prints the median and the 90th percentile of each case in milliseconds. A TAB that needs
names runs `ruripy __complete KIND` (the argv fast path, no typer); the budget is well under
150 ms. `ruripy list` (a full typer start) is measured for comparison.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [
    ("static: ruripy r<TAB>", "ruripy r"),
    ("options: ruripy run --<TAB>", "ruripy run --"),
    ("containers: ruripy run <TAB>", "ruripy run "),
    ("running: ruripy exec <TAB>", "ruripy exec "),
    ("images: ruripy create x <TAB>", "ruripy create x "),
    ("catalog: ruripy pull debian:<TAB>", "ruripy pull debian:"),
]


def build_store(base: str, env: dict, containers: int) -> None:
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from conftest import busybox_rootfs  # noqa: PLC0415 (the tests' rootfs builder)

    root = busybox_rootfs(os.path.join(base, "rootfs"))
    tarball = os.path.join(base, "bench-1.0.tar")
    with tarfile.open(tarball, "w") as t:
        t.add(root, arcname=".")

    def ruripy(*args: str) -> None:
        subprocess.run(["ruripy", *args], env=env, check=True, capture_output=True)

    ruripy("pull", tarball, "--quiet")
    for i in range(containers):
        ruripy("create", f"box{i:02d}", "bench-1.0")


def tab_times(env: dict, line: str, runs: int) -> list[float]:
    script = f"""
source {os.path.join(REPO, "completions", "ruripy.bash")}
for ((i = 0; i < {runs + 2}; i++)); do
    COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; COMPREPLY=()
    t0=$EPOCHREALTIME; _ruripy; t1=$EPOCHREALTIME
    echo "$t0 $t1 ${{#COMPREPLY[@]}}"
done
"""
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    times = []
    for row in out.splitlines()[2:]:  # two warm-up runs
        t0, t1, _ = row.split()
        times.append((float(t1) - float(t0)) * 1000)
    return times


def command_times(env: dict, argv: list[str], runs: int) -> list[float]:
    times = []
    for i in range(runs + 2):
        t0 = time.perf_counter()
        r = subprocess.run(argv, env=env, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"{argv} failed ({r.returncode}): {r.stderr.strip()} {r.stdout.strip()}")
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=30)
    ap.add_argument("--containers", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ruripy-bench-") as base:
        os.chmod(base, 0o755)
        bindir = os.path.join(base, "bin")
        os.mkdir(bindir)
        exe = os.path.join(bindir, "ruripy")
        with open(exe, "w") as f:  # what pip's console script does
            f.write(
                f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {REPO!r})\n"
                "from ruripy.__main__ import main\nmain()\n"
            )
        os.chmod(exe, 0o755)
        env = dict(
            os.environ,
            PATH=bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"),
            RURIPY_HOME=os.path.join(base, "home"),
        )
        build_store(base, env, args.containers)
        rows = [(name, tab_times(env, line, args.runs)) for name, line in CASES]
        rows.append(("reference: ruripy list (typer)", command_times(env, ["ruripy", "list"], 10)))
        print(f"one TAB in bash, {args.runs} runs, {args.containers} containers (ms)")
        print(f"{'case':40} {'median':>8} {'p90':>8}")
        for name, ts in rows:
            ts.sort()
            p90 = ts[min(len(ts) - 1, int(len(ts) * 0.9))]
            print(f"{name:40} {statistics.median(ts):8.1f} {p90:8.1f}")
        subprocess.run(["rm", "-rf", "--one-file-system", env["RURIPY_HOME"]], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
