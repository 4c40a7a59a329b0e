#!/opt/ruripy-venv/bin/python
"""Benchmark: `ruripy pull` from an LXC mirror on loopback against `curl -o` + `tar -xJf`.

Builds a real Debian minbase rootfs.tar.xz once (cached in bench/.cache/pull/): with
mmdebstrap if installed, else debootstrap, else a large synthetic tree from the host's
/usr (it says which). Serves it as an LXC image server tree from 127.0.0.1, then each
round with empty caches:

  ruripy : ruripy pull debian:bookworm --mirror URL      (fresh RURIPY_HOME)
  oracle : curl -o rootfs.tar.xz URL && tar -xJf rootfs.tar.xz -C DIR

and prints the medians, the ratio ruripy/oracle (target: <= 1.0, since ruripy extracts
while it downloads) and the peak memory of the pull (ru_maxrss of the process and its
user-namespace helper; target < 100 MB). `--rootless` runs both as the test user.

Usage: bench/pull.py [--rounds N] [--rootless] [--rebuild]
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

CACHE = os.path.join(HERE, ".cache", "pull")
ROOTFS = os.path.join(CACHE, "rootfs.tar.xz")
SOURCE = os.path.join(CACHE, "rootfs.source")
SUITE = "bookworm"
TEST_USER = os.environ.get("RURIPY_TEST_USER", "ruripy-test")


def apt_debian_mirror() -> str:
    """The Debian archive URI apt uses on this machine (deb822 or one-line sources)."""
    files = []
    for d in ("/etc/apt/sources.list.d",):
        try:
            files += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".sources")]
        except OSError:
            pass
    for path in files:
        with open(path) as f:
            for stanza in f.read().split("\n\n"):
                fields = {}
                for line in stanza.splitlines():
                    if ":" in line and not line.startswith("#"):
                        k, v = line.split(":", 1)
                        fields[k.strip().lower()] = v.strip()
                if SUITE in fields.get("suites", "").split() and fields.get("uris"):
                    return fields["uris"].split()[0]
    try:
        with open("/etc/apt/sources.list") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                    return parts[1]
    except OSError:
        pass
    return "http://deb.debian.org/debian"


def xz_file(src: str, dest: str) -> None:
    with open(dest + ".tmp", "wb") as out:
        subprocess.run(["xz", "-T0", "-6", "-c", src], stdout=out, check=True)
    os.replace(dest + ".tmp", dest)


def build_rootfs() -> str:
    """Make bench/.cache/pull/rootfs.tar.xz; return how it was made."""
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="build.", dir=CACHE)
    try:
        mirror = apt_debian_mirror()
        tar = os.path.join(work, "rootfs.tar")
        if shutil.which("mmdebstrap"):
            print(f"building a Debian {SUITE} minbase rootfs with mmdebstrap from {mirror}")
            subprocess.run(
                ["mmdebstrap", "--variant=minbase", "--quiet", SUITE, tar, mirror], check=True
            )
            how = f"mmdebstrap --variant=minbase {SUITE} ({mirror})"
        elif shutil.which("debootstrap"):
            print(f"building a Debian {SUITE} minbase rootfs with debootstrap from {mirror}")
            target = os.path.join(work, "rootfs")
            subprocess.run(
                ["debootstrap", "--variant=minbase", SUITE, target, mirror],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            subprocess.run(["tar", "--numeric-owner", "-C", target, "-cf", tar, "."], check=True)
            how = f"debootstrap --variant=minbase {SUITE} ({mirror})"
        else:
            print("mmdebstrap and debootstrap are missing: using a SYNTHETIC tree from /usr")
            dirs = [
                d
                for d in ("usr/lib/python3", "usr/share/perl", "usr/share/doc", "usr/bin")
                if os.path.isdir("/" + d)
            ]
            dirs += ["usr/lib/" + n for n in os.listdir("/usr/lib") if n.startswith("python3.")]
            subprocess.run(
                ["tar", "-C", "/", "--transform", "s,^,./,", "-cf", tar, *dirs], check=True
            )
            how = "synthetic (host /usr folders), not a real distro"
        print(f"compressing {os.path.getsize(tar) / 1e6:.0f} MB with xz -6 (once)")
        xz_file(tar, ROOTFS)
        with open(SOURCE, "w") as f:
            f.write(how + "\n")
        return how
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", work], check=False)


def as_user(argv: list[str], user: pwd.struct_passwd | None, env: dict) -> list[str]:
    envargs = [f"{k}={v}" for k, v in env.items()]
    if user is None:
        return ["env", "-i", *envargs, *argv]
    return ["runuser", "-u", user.pw_name, "--", "env", "-i", *envargs, *argv]


def timed(argv: list[str]) -> tuple[float, int]:
    """Wall time and peak RSS (KB, the process and the children it waited for)."""
    t = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode()
    p.stderr.close()
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(argv)}\n{err}")
    return elapsed, usage.ru_maxrss


def rm(path: str) -> None:
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


_SERVER = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from lxcmirror import MirrorServer, build_mirror, host_arch
prod = ("debian", sys.argv[4], host_arch(), "default")
with open(sys.argv[3], "rb") as f:
    m = build_mirror(sys.argv[2], [prod], rootfs={prod: f.read()})
with MirrorServer(sys.argv[2]) as s:
    print(s.url, m.path_of(*prod[:3]), flush=True)
    threading.Event().wait()
"""


def start_server(tree: str) -> tuple[subprocess.Popen, str, str]:
    """Serve an LXC tree holding ROOTFS from another process; (process, base URL, path)."""
    p = subprocess.Popen(
        [sys.executable, "-c", _SERVER, os.path.join(REPO, "tests"), tree, ROOTFS, SUITE],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = p.stdout.readline().split()
    if len(line) != 2:
        p.kill()
        sys.exit("the mirror server did not start")
    subprocess.run(["chmod", "-R", "a+rX", tree], check=True)
    return p, line[0], line[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rootless", action="store_true", help="run both as the test user")
    ap.add_argument("--rebuild", action="store_true", help="build the rootfs again")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run the benchmark as root (it builds a rootfs and switches users)")
    if args.rebuild or not os.path.exists(ROOTFS):
        how = build_rootfs()
    else:
        with open(SOURCE) as f:
            how = f.read().strip()
    user = pwd.getpwnam(TEST_USER) if args.rootless else None
    size = os.path.getsize(ROOTFS)

    work = tempfile.mkdtemp(prefix="run.", dir=CACHE)
    os.chmod(work, 0o755)
    server = None
    try:
        # The package, readable by the test user too.
        src = os.path.join(work, "src")
        shutil.copytree(os.path.join(REPO, "ruripy"), os.path.join(src, "ruripy"), symlinks=False)
        subprocess.run([sys.executable, "-m", "compileall", "-q", src], check=True)
        subprocess.run(["chmod", "-R", "a+rX", work], check=True)
        # The server lives in its own process, so that this one stays small: a child's
        # ru_maxrss starts from the size of the process it was forked from.
        server, base, rel = start_server(os.path.join(work, "mirror"))
        url = f"{base}/{rel}"
        env = {
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": user.pw_dir if user else "/root",
            "LANG": "C.UTF-8",
            "PYTHONPATH": src,
        }
        print(
            f"rootfs.tar.xz: {size / 1e6:.1f} MB, {how}; {args.rounds} rounds, "
            f"{'rootless' if user else 'root'}; served from {base}"
        )
        ruripy_t, oracle_t, rss = [], [], []
        for i in range(args.rounds):
            for which in ("ruripy", "oracle") if i % 2 == 0 else ("oracle", "ruripy"):
                d = os.path.join(work, f"{which}.{i}")
                os.sync()  # start each run without the previous run's writeback
                os.mkdir(d, 0o700)
                if user:
                    os.chown(d, user.pw_uid, user.pw_gid)
                if which == "ruripy":
                    e = dict(env, RURIPY_HOME=d)
                    argv = [sys.executable, "-m", "ruripy", "pull", f"debian:{SUITE}"]
                    argv += ["--mirror", base, "--quiet"]
                    t, kb = timed(as_user(argv, user, e))
                    ruripy_t.append(t)
                    rss.append(kb)
                else:
                    # As a user, skip the device nodes like lxc-create does (excludes-user).
                    skip = " --exclude='./dev/*'" if user else ""
                    script = (
                        f"curl -sSf -o {d}/rootfs.tar.xz '{url}' && mkdir {d}/rootfs && "
                        f"tar -xJf {d}/rootfs.tar.xz -C {d}/rootfs{skip}"
                    )
                    t, _ = timed(as_user(["sh", "-c", script], user, env))
                    oracle_t.append(t)
                print(f"  round {i + 1} {which:6s} {t:6.2f} s", flush=True)
                if user:
                    subprocess.run(as_user([sys.executable, "-c", _RM, d], user, env), check=False)
                rm(d)
        r, o = statistics.median(ruripy_t), statistics.median(oracle_t)
        print(f"ruripy pull      median {r:6.2f} s")
        print(f"curl + tar -xJf  median {o:6.2f} s")
        print(f"ratio ruripy/oracle: {r / o:.2f} (target <= 1.00)")
        print(f"peak memory of the pull: {max(rss) / 1024:.0f} MB (target < 100 MB)")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        rm(work)


# Empties a rootless folder (files owned by subordinate ids) through ruripy itself; the
# folder itself is in a root-owned one, so root removes it afterwards.
_RM = (
    "import os, sys; from ruripy.images.install import remove_tree; "
    "remove_tree([os.path.join(sys.argv[1], n) for n in os.listdir(sys.argv[1])])"
)


if __name__ == "__main__":
    main()
