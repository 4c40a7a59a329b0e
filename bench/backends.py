#!/opt/ruripy-venv/bin/python
"""Benchmark: a metadata-heavy workload in a container, per backend, against the host.

The workload (busybox sh and tar, the same script everywhere): unpack a tarball of a few
thousand small files into /tmp, list them with find, and delete them again, K times in
one process. It runs, in interleaved rounds:

  host       : busybox sh -c WORK                       (root, a host folder)
  rootless   : ruripy run box -- sh -c WORK             (the test user)
  privileged : ruripy run box -- sh -c WORK             (root)
  proot      : ruripy run --backend proot box -- ...    (the test user)

Each launcher is also timed running `true`; (time with WORK - time with true) / K is the
cost of one workload iteration, so start-up (Python, runuser, id maps, proot itself) is
not counted against the backend. Prints medians and the ratios to the host. Targets:
rootless and privileged within 1.2x of the host; proot is reported.

Everything lives in a temporary folder on --dir (default /dev/shm: a tmpfs, so the disk's
writeback noise does not drown the differences). Run as root (tests/setup.sh makes the
test user).

The start-up column is the launcher running `true` (runuser, the interpreter, ruripy,
and for proot the proot binary); it is reported, not part of the ratio.

Usage: bench/backends.py [--rounds N] [--iterations K] [--files N] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pwd
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PY = sys.executable
TEST_USER = os.environ.get("RURIPY_TEST_USER", "ruripy-test")
BUSYBOX = "/bin/busybox"
TARGET = 1.2


def make_tarball(path: str, files: int) -> None:
    """`files` small files (50-400 bytes) in folders of 100, plus their folders."""
    with tarfile.open(path, "w") as tar:
        for i in range(files):
            data = (f"file {i}\n" * (5 + i % 40)).encode()
            info = tarfile.TarInfo(f"tree/d{i // 100:03d}/f{i:05d}.txt")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))


def make_rootfs(path: str) -> None:
    for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev", "usr/bin", "sbin"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", os.path.join(path, "bin", a))
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\n")


def work_script(tarball: str, scratch: str, k: int) -> str:
    return (
        f"i=0; while [ $i -lt {k} ]; do "
        f"mkdir -p {scratch} && cd {scratch} && tar -xf {tarball} && "
        "find . -type f | wc -l >/dev/null && cd / && "
        f"rm -rf {scratch} && i=$((i+1)); done"
    )


class Launcher:
    def __init__(self, name: str, argv_for) -> None:
        self.name = name
        self.argv_for = argv_for  # script -> argv
        self.work: list[float] = []
        self.true: list[float] = []

    def time(self, script: str) -> float:
        t = time.perf_counter()
        r = subprocess.run(
            self.argv_for(script), stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        dt = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(f"{self.name}: exit {r.returncode}: {r.stderr.strip()}")
        return dt


def cli_argv(home: str, user: pwd.struct_passwd | None, *args: str) -> list[str]:
    """The ruripy CLI as `user` (root when None) with its own storage root."""
    env = [
        "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        f"HOME={user.pw_dir if user else '/root'}",
        "LANG=C.UTF-8",
        f"PYTHONPATH={REPO}",
        f"RURIPY_HOME={home}",
    ]
    prefix = ["runuser", "-u", user.pw_name, "--"] if user else []
    return [*prefix, "env", "-i", *env, PY, "-m", "ruripy", *args]


def ruripy_argv(home: str, user: pwd.struct_passwd | None, extra: list[str]):
    return lambda script: cli_argv(home, user, "run", *extra, "box", "--", "sh", "-c", script)


def setup(base: str, files: int, user: pwd.struct_passwd) -> dict:
    os.chmod(base, 0o755)
    tarball = os.path.join(base, "bench.tar")
    make_tarball(tarball, files)
    os.chmod(tarball, 0o644)
    src = os.path.join(base, "rootfs")
    make_rootfs(src)
    shutil.copy2(tarball, os.path.join(src, "bench.tar"))
    subprocess.run(["chmod", "-R", "a+rX", src], check=True)
    homes = {}
    for who, u in (("root", None), ("user", user)):
        home = os.path.join(base, f"home-{who}")
        os.mkdir(home, 0o700)
        if u:
            os.chown(home, u.pw_uid, u.pw_gid)
        homes[who] = home
        r = subprocess.run(cli_argv(home, u, "import", "box", src), capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"import as {who} failed: {r.stderr.strip()}")
    host_scratch = os.path.join(base, "host-scratch")
    return {"tarball": tarball, "homes": homes, "host_scratch": host_scratch}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=3, help="workloads per container run")
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the privileged backend needs it, and the others run as "
                         f"the test user {TEST_USER}")  # fmt: skip
    try:
        user = pwd.getpwnam(TEST_USER)
    except KeyError:
        raise SystemExit(f"no test user {TEST_USER}: run tests/setup.sh") from None
    base = tempfile.mkdtemp(prefix="ruripy-bench.", dir=args.dir)
    try:
        s = setup(base, args.files, user)
        k = args.iterations
        host_script = work_script(s["tarball"], s["host_scratch"], k)
        box_script = work_script("/bench.tar", "/tmp/w", k)
        host = Launcher("host", lambda script: [BUSYBOX, "sh", "-c", script])
        host.script = host_script
        launchers = [host]
        for name, home, u, extra in (
            ("rootless", s["homes"]["user"], user, []),
            ("privileged", s["homes"]["root"], None, []),
            ("proot", s["homes"]["user"], user, ["--backend", "proot"]),
        ):
            lz = Launcher(name, ruripy_argv(home, u, extra))
            lz.script = box_script
            launchers.append(lz)
        for lz in launchers:  # warm-up
            lz.time(lz.script)
        rng = random.Random(1)
        for _ in range(args.rounds):
            rng.shuffle(launchers)  # no backend always runs right after the heavy proot one
            for lz in launchers:
                lz.true.append(lz.time("true"))
                lz.work.append(lz.time(lz.script))
        rows = []
        launchers.sort(key=lambda lz: ("host", "rootless", "privileged", "proot").index(lz.name))
        for lz in launchers:
            per = [(w - t) / k for w, t in zip(lz.work, lz.true, strict=True)]
            rows.append({
                "backend": lz.name,
                "per_iteration_ms": statistics.median(per) * 1000,
                "startup_ms": statistics.median(lz.true) * 1000,
            })  # fmt: skip
        base_ms = rows[0]["per_iteration_ms"]
        for row in rows:
            row["ratio"] = row["per_iteration_ms"] / base_ms if base_ms > 0 else float("nan")
        ok = all(r["ratio"] <= TARGET for r in rows if r["backend"] in ("rootless", "privileged"))
        if args.json:
            doc = {"files": args.files, "iterations": k, "rounds": args.rounds,
                   "dir": args.dir, "rows": rows, "target_met": ok}  # fmt: skip
            print(json.dumps(doc, indent=2))
        else:
            print(f"unpack + find + delete {args.files} small files with busybox tar, "
                  f"{k} per run, median of {args.rounds} rounds, on {args.dir}")  # fmt: skip
            print(f"{'backend':<12}{'per iteration':>16}{'vs host':>10}{'start-up':>12}")
            for r in rows:
                print(f"{r['backend']:<12}{r['per_iteration_ms']:>13.1f} ms{r['ratio']:>9.2f}x"
                      f"{r['startup_ms']:>9.1f} ms")  # fmt: skip
            print(f"target: rootless and privileged within {TARGET}x of the host: "
                  f"{'met' if ok else 'NOT met'}; proot is reported only.")  # fmt: skip
        return 0 if ok else 1
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", base], check=False)


if __name__ == "__main__":
    sys.exit(main())
