#!/opt/ruripy-venv/bin/python
"""Benchmark: starting and joining a container, and creating one, against plain tools.

On one busybox rootfs (tests/conftest.busybox_rootfs), as the unprivileged test user when
started as root (it re-runs itself through runuser) and as the caller otherwise:

  run    : ruripy run NAME /bin/true
           vs bwrap (user, pid, ipc, uts namespaces; rootfs bind, /proc, /dev) /bin/true
           vs unshare --user --map-root-user --pid --fork --mount-proc chroot ROOTFS /bin/true
  exec   : ruripy exec NAME /bin/true  vs  nsenter -t INIT -U -m -p -u -i … /bin/true,
           both into the same started container
  create : ruripy create NAME IMAGE (whole command, and containers.create alone), and the
           disk the new container takes

ruripy runs through the installed console script (/opt/ruripy-venv/bin/ruripy, else
`python -m ruripy`) with PYTHONPATH pointing at a world-readable copy of this checkout, so
the code measured is the working tree. The commands compared take turns in every round
(5 warm-up rounds, then --runs; the host's speed drifts over seconds, and a ratio must
compare like with like); --hyperfine times each in a block of its own with hyperfine -N
instead. Prints medians and the ratios; targets: run <= 8x bwrap, exec <= 8x nsenter,
create < 0.3 s and < 1 MB with overlay.

Usage: bench/launch.py [--runs N] [--hyperfine] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PY = "/opt/ruripy-venv/bin/python" if os.path.exists("/opt/ruripy-venv/bin/python") else None
PY = PY or sys.executable
CONSOLE = "/opt/ruripy-venv/bin/ruripy"
TEST_USER = os.environ.get("RURIPY_TEST_USER", "ruripy-test")
TARGETS = {"run": 8.0, "exec": 8.0, "create_s": 0.3, "create_bytes": 1 << 20}


# -- preparing, as the measuring user --------------------------------------------------------


def copy_source(dest: str) -> str:
    """A compiled copy of the package that any user can import (like tests' src_copy)."""
    src = os.path.join(dest, "src")
    shutil.copytree(
        os.path.join(REPO, "ruripy"),
        os.path.join(src, "ruripy"),
        ignore=shutil.ignore_patterns("__pycache__", "catalog"),
    )
    catalog = os.path.join(REPO, "rootfs-images")
    if os.path.isdir(catalog):
        shutil.copytree(catalog, os.path.join(src, "ruripy", "catalog"))
    subprocess.run([PY, "-m", "compileall", "-q", src], check=True)
    return src


def build_rootfs(dest: str) -> tuple[str, str]:
    """The busybox rootfs folder (for bwrap and unshare) and the same tree as a tarball."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from conftest import busybox_rootfs  # tests/conftest.py

    root = busybox_rootfs(os.path.join(dest, "rootfs"))
    tar = os.path.join(dest, "busybox.tar")

    def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(tar, "w") as t:
        t.add(root, arcname=".", filter=as_root)
    return root, tar


def ruripy_argv() -> list[str]:
    if os.access(CONSOLE, os.X_OK):
        return [CONSOLE]
    return [PY, "-m", "ruripy"]


def du(path: str) -> int:
    seen, total = set(), 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, n))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


# -- timing -----------------------------------------------------------------------------------


def interleaved(commands: dict[str, list[str]], runs: int, warmup: int = 5) -> dict[str, float]:
    """Median seconds of each command, the commands taking turns (in alternating order) in
    every round: this host's speed drifts by tens of percent over seconds, and a ratio must
    compare runs made under the same conditions. CPU: mean user + system of the command
    and the children it waited for (os.wait4)."""
    names = list(commands)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    quiet = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    for i in range(warmup + runs):
        for name in names if i % 2 == 0 else names[::-1]:
            argv = commands[name]
            t0 = time.perf_counter()
            pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=quiet)
            _, status, usage = os.wait4(pid, 0)
            took = time.perf_counter() - t0
            if status:
                sys.exit(f"{name}: {' '.join(argv)} failed (wait status {status})")
            if i >= warmup:
                times[name].append(took)
                cpu[name].append(usage.ru_utime + usage.ru_stime)
    CPU.update({n: statistics.mean(v) for n, v in cpu.items()})
    return {n: statistics.median(v) for n, v in times.items()}


def compare(commands: dict[str, list[str]], runs: int, workdir: str) -> dict[str, float]:
    """Median seconds of each command: interleaved (default), or hyperfine -N blocks."""
    for name, argv in commands.items():  # each must work before it is timed
        p = subprocess.run(argv, capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"{name}: {' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    hf = shutil.which("hyperfine") if HYPERFINE else None
    if not hf:
        return interleaved(commands, runs)
    out = os.path.join(workdir, "hyperfine.json")
    argv = [hf, "-N", "--style", "basic", "--warmup", "5", "--runs", str(runs)]
    argv += ["--export-json", out]
    for name, cmd in commands.items():
        argv += ["-n", name, " ".join(cmd)]
    subprocess.run(argv, check=True, stdout=sys.stderr)
    with open(out) as f:
        results = json.load(f)["results"]
    CPU.update({r["command"]: r["user"] + r["system"] for r in results})
    return {r["command"]: r["median"] for r in results}


HYPERFINE = False  # --hyperfine: time each command in a block of its own with hyperfine -N
CPU: dict[str, float] = {}  # mean user+system seconds per command


# -- the benchmark ------------------------------------------------------------------------------


def measure(work: str, runs: int) -> dict:
    src = copy_source(work)
    rootfs, tar = build_rootfs(work)
    home = os.path.join(work, "home")
    os.mkdir(home, 0o700)
    env = dict(os.environ, PYTHONPATH=src, RURIPY_HOME=home)
    os.environ.update(PYTHONPATH=src, RURIPY_HOME=home)
    rp = ruripy_argv()

    def ruripy(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*rp, *args], env=env, capture_output=True, text=True, check=check)

    image = ruripy("pull", "--quiet", tar).stdout.strip()
    ruripy("create", "box", image)
    out: dict = {"user": pwd.getpwuid(os.geteuid()).pw_name, "tool": "hyperfine -N"}
    if not (HYPERFINE and shutil.which("hyperfine")):
        out["tool"] = f"interleaved, median of {runs}"
    out["ruripy"] = " ".join(rp)

    # run
    run = compare(
        {
            "ruripy run": [*rp, "run", "box", "/bin/true"],
            "bwrap": [
                "bwrap", "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev", "/bin/true",
            ],
            "unshare": [
                "unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc",
                "chroot", rootfs, "/bin/true",
            ],
        },
        runs,
        work,
    )  # fmt: skip
    out["run"] = run

    # exec, into the same started container
    ruripy("start", "box")
    try:
        init = {c["name"]: c["pid"] for c in json.loads(ruripy("ps", "--json").stdout)}["box"]
        nsenter = ["nsenter", "-t", str(init), "-m", "-p", "-u", "-i", "-r", "-w"]
        if os.geteuid() != 0:
            nsenter[3:3] = ["-U", "--preserve-credentials"]
        out["exec"] = compare(
            {"ruripy exec": [*rp, "exec", "box", "/bin/true"], "nsenter": [*nsenter, "/bin/true"]},
            runs,
            work,
        )
    finally:
        ruripy("stop", "box")

    # create: the whole command, and the library call alone (no Python or typer start-up)
    walls, disks = [], []
    for i in range(max(5, min(runs, 20))):
        name = f"c{i}"
        t0 = time.perf_counter()
        ruripy("create", name, image)
        walls.append(time.perf_counter() - t0)
        disks.append(du(os.path.join(home, "containers", name)))
    code = (
        "import sys, time\nfrom ruripy import containers\nts = []\n"
        "for i in range(10):\n    t0 = time.perf_counter()\n"
        "    containers.create(f'lib{i}', sys.argv[1], {})\n"
        "    ts.append(time.perf_counter() - t0)\n"
        "print(sorted(ts)[len(ts) // 2])\n"
    )
    lib = float(subprocess.run([PY, "-c", code, image], env=env, capture_output=True,
                               text=True, check=True).stdout)  # fmt: skip
    storage = {c["name"]: c["storage"] for c in json.loads(ruripy("list", "--json").stdout)}
    out["create"] = {
        "storage": storage["c0"],
        "cli_median_s": statistics.median(walls),
        "library_median_s": lib,
        "disk_bytes_median": statistics.median(disks),
        "image_bytes": du(rootfs),
    }
    out["cpu"] = dict(CPU)
    out["load"] = os.getloadavg()
    return out


def cleanup(work: str) -> None:
    """Remove the work folder; rootless trees hold files of subordinate ids, so containers
    and images go through ruripy first."""
    home = os.path.join(work, "home")
    if os.path.isdir(home) and os.geteuid() != 0:
        rp = ruripy_argv()
        env = dict(os.environ, RURIPY_HOME=home, PYTHONPATH=os.path.join(work, "src"))
        for what, rm in (("list", "rm"), ("images", "rmi")):
            p = subprocess.run([*rp, what, "--json"], env=env, capture_output=True, text=True)
            names = [x["name"] for x in json.loads(p.stdout or "[]")]
            if names:
                subprocess.run([*rp, rm, "--force", *names], env=env, capture_output=True)
    subprocess.run(["rm", "-rf", "--one-file-system", work], check=False)


def report(r: dict) -> None:
    run, ex, cr = r["run"], r["exec"], r["create"]
    print(f"as user {r['user']}; timing: {r['tool']}; ruripy: {r['ruripy']}")
    print()
    cpu = r.get("cpu") or {}

    def line(k: str, v: float) -> None:
        extra = f"   (CPU {cpu[k] * 1000:5.1f} ms)" if k in cpu else ""
        print(f"  {k:<12} {v * 1000:8.1f} ms{extra}")

    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in r['load'])}")
    print("run /bin/true (median):")
    for k, v in run.items():
        line(k, v)
    ratio = run["ruripy run"] / run["bwrap"]
    ok = "ok" if ratio <= TARGETS["run"] else "OVER TARGET"
    print(f"  ratio ruripy/bwrap   {ratio:5.1f}x  (target <= {TARGETS['run']:.0f}: {ok})")
    print(f"  ratio ruripy/unshare {run['ruripy run'] / run['unshare']:5.1f}x")
    print()
    print("exec /bin/true into a started container (median):")
    for k, v in ex.items():
        line(k, v)
    ratio = ex["ruripy exec"] / ex["nsenter"]
    ok = "ok" if ratio <= TARGETS["exec"] else "OVER TARGET"
    print(f"  ratio ruripy/nsenter {ratio:5.1f}x  (target <= {TARGETS['exec']:.0f}: {ok})")
    print()
    print(f"create from an image ({cr['storage']}):")
    ok = "ok" if cr["cli_median_s"] < TARGETS["create_s"] else "OVER TARGET"
    print(f"  whole command      {cr['cli_median_s'] * 1000:8.1f} ms  (target < 300 ms: {ok})")
    print(f"  containers.create  {cr['library_median_s'] * 1000:8.1f} ms")
    ok = "ok" if cr["disk_bytes_median"] < TARGETS["create_bytes"] else "OVER TARGET"
    print(
        f"  disk               {cr['disk_bytes_median'] / 1024:8.1f} KiB  (target < 1 MiB: {ok};"
        f" the image is {cr['image_bytes'] / 1024:.0f} KiB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100, help="timed runs per command (default 100)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument(
        "--hyperfine", action="store_true", help="time with hyperfine -N, one command at a time"
    )
    ap.add_argument("--work", help=argparse.SUPPRESS)  # set when re-run as the test user
    args = ap.parse_args()
    global HYPERFINE
    HYPERFINE = args.hyperfine
    path = os.environ.get("PATH", "/usr/bin:/bin").split(":")
    os.environ["PATH"] = ":".join(path + [d for d in ("/usr/sbin", "/sbin") if d not in path])

    if os.geteuid() == 0 and not args.work:
        try:
            user = pwd.getpwnam(TEST_USER)
        except KeyError:
            sys.exit(f"run as root, this measures as {TEST_USER}: run tests/setup.sh first")
        work = tempfile.mkdtemp(prefix="ruripy-bench.", dir="/tmp")
        os.chmod(work, 0o755)
        os.chown(work, user.pw_uid, user.pw_gid)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": user.pw_dir,
            "LANG": "C.UTF-8",
            "TERM": os.environ.get("TERM", "xterm"),
        }
        argv = [PY, os.path.abspath(__file__), "--work", work, "--runs", str(args.runs)]
        argv += ["--json"] if args.json else []
        argv += ["--hyperfine"] if args.hyperfine else []
        try:
            code = subprocess.run(
                ["runuser", "-u", user.pw_name, "--", "env", "-i"]
                + [f"{k}={v}" for k, v in env.items()]
                + argv
            ).returncode
        finally:
            if not args.keep:
                subprocess.run(["rm", "-rf", "--one-file-system", work], check=False)
        sys.exit(code)

    work = args.work or tempfile.mkdtemp(prefix="ruripy-bench.", dir="/tmp")
    try:
        results = measure(work, args.runs)
    finally:
        if not args.keep and not args.work:
            cleanup(work)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)


if __name__ == "__main__":
    main()
