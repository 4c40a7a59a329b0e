#!/opt/ruripy-venv/bin/python
"""Benchmark: `ruripy pull docker://…` against `skopeo copy` + `umoci unpack`, one run.

Builds a several-layer image once (cached in bench/.cache/pull_oci): a busybox rootfs,
/usr/lib/python3.X, /usr/share/perl, and a layer with whiteouts and an opaque folder;
pushes it to Debian's docker-registry on loopback; then, each round with empty caches,
the two in turn (which goes first alternates; `sync` before each):

  ruripy : ruripy pull docker://127.0.0.1:PORT/bench/image:1   (fresh RURIPY_HOME)
  oracle : skopeo copy docker://… oci:DIR:1 && umoci unpack --image DIR:1 BUNDLE

and prints the medians and the ratio ruripy/oracle. `--rootless` runs ruripy as the test
user (umoci then runs with --rootless as that user too). The trees are compared once, so
the timing is of equal work.

Usage: bench/pull_oci.py [--rounds N] [--rootless]
"""

from __future__ import annotations

import argparse
import hashlib
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
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

import registry  # noqa: E402  (tests/registry.py)

CACHE = os.path.join(HERE, ".cache", "pull_oci")
PY = sys.executable
TEST_USER = os.environ.get("RURIPY_TEST_USER", "ruripy-test")


def build_image(b: registry.ImageBuilder, tag: str) -> None:
    """Four layers: busybox rootfs, python stdlib, perl, whiteouts + opaque folder."""
    registry._run("umoci", "new", "--image", b.image(tag))
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    steps = [
        ("busybox", None),
        ("python", f"/usr/lib/{py}"),
        ("perl", "/usr/share/perl"),
        ("whiteouts", None),
    ]
    for what, src in steps:
        bundle = b._unpack(tag)
        root = os.path.join(bundle, "rootfs")
        if what == "busybox":
            for d in ("bin", "etc", "tmp", "root", "usr/lib", "usr/share"):
                os.makedirs(os.path.join(root, d), exist_ok=True)
            shutil.copy2("/bin/busybox", os.path.join(root, "bin", "busybox"))
            for a in ("sh", "ls", "cat"):
                os.symlink("busybox", os.path.join(root, "bin", a))
        elif src:
            if os.path.isdir(src):
                shutil.copytree(src, root + src, symlinks=True, ignore_dangling_symlinks=True)
        else:
            pydir = os.path.join(root, "usr", "lib", py)
            for name in sorted(os.listdir(pydir))[::3]:
                p = os.path.join(pydir, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)
            perl = os.path.join(root, "usr", "share", "perl")
            if os.path.isdir(perl):
                shutil.rmtree(perl)
                os.makedirs(os.path.join(perl, "fresh"))
        b._repack(tag, bundle)
    registry._run(
        "umoci", "config", "--image", b.image(tag), "--config.cmd", "/bin/sh",
        "--os", "linux", "--architecture", registry._host_oci_arch(),
    )  # fmt: skip


def tree_digest(root: str) -> tuple[int, str]:
    """(entries, digest) over names, types, modes, sizes, contents and link targets."""
    h = hashlib.sha256()
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            n += 1
            h.update(f"{os.path.relpath(p, root)}\0{st.st_mode:o}\0".encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode())
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    return n, h.hexdigest()


def as_user(argv: list[str], user: pwd.struct_passwd | None, env: dict) -> list[str]:
    envargs = [f"{k}={v}" for k, v in env.items()]
    if user is None:
        return ["env", *envargs, *argv]
    return ["runuser", "-u", user.pw_name, "--", "env", "-i", *envargs, *argv]


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv[-6:])} failed ({r.returncode}):\n{r.stderr}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rootless", action="store_true", help="run both as the test user")
    args = ap.parse_args()
    why = registry.missing_tools()
    if why:
        raise SystemExit(f"cannot run: {why}")
    if os.geteuid() != 0:
        raise SystemExit("run as root (it starts the registry and builds with umoci)")
    user = pwd.getpwnam(TEST_USER) if args.rootless else None

    os.makedirs(CACHE, exist_ok=True)
    b = registry.ImageBuilder(os.path.join(CACHE, "build"))
    try:
        b.descriptor("bench")
    except KeyError:
        print("building the benchmark image (once)...", file=sys.stderr)
        build_image(b, "bench")
    work = tempfile.mkdtemp(prefix="pull_oci.", dir="/tmp")
    os.chmod(work, 0o755)
    reg = registry.RegistryProcess(os.path.join(work, "reg"), os.path.join(work, "storage"))
    try:
        dest = f"{reg.host}/bench/image:1"
        b.push("bench", dest)
        desc = b.descriptor("bench")
        import json

        manifest = json.loads(b.read_blob(desc["digest"]))
        size = sum(d["size"] for d in manifest["layers"])
        print(
            f"image: {len(manifest['layers'])} layers, {size / 1e6:.1f} MB compressed; "
            f"{args.rounds} rounds, {'rootless' if user else 'root'}",
        )
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": user.pw_dir if user else "/root",
            "LANG": "C.UTF-8",
            "PYTHONPATH": REPO,
        }
        ours, oracle = [], []
        checked = False
        for i in range(args.rounds):
            rd = os.path.join(work, f"round{i}")
            os.mkdir(rd, 0o755)
            if user:
                os.chown(rd, user.pw_uid, user.pw_gid)
            home = os.path.join(rd, "ruripy")
            layout = os.path.join(rd, "oci")
            bundle = os.path.join(rd, "bundle")
            unpack = ["umoci", "unpack"] + (["--rootless"] if user else [])
            # The two alternate which goes first, and each starts without the writeback
            # of what ran before it (as bench/pull.py): on a file system that has just
            # deleted many files, creating files costs more, and the rounds delete theirs.
            for which in ("ruripy", "oracle") if i % 2 == 0 else ("oracle", "ruripy"):
                os.sync()
                if which == "ruripy":
                    argv = [PY, "-m", "ruripy", "pull", f"docker://{dest}", "--quiet"]
                    ours.append(timed(as_user(argv, user, {**env, "RURIPY_HOME": home})))
                    continue
                t = timed(
                    as_user(
                        ["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                         f"docker://{dest}", f"oci:{layout}:1"],
                        user,
                        env,
                    )
                )  # fmt: skip
                t += timed(as_user([*unpack, "--image", f"{layout}:1", bundle], user, env))
                oracle.append(t)
            if not checked:
                sys.path.insert(0, REPO)
                from ruripy.store import Store

                mine = os.path.join(home, "images", Store(home).image_id(dest), "rootfs")
                a, b_ = tree_digest(mine), tree_digest(os.path.join(bundle, "rootfs"))
                same = "identical" if a == b_ else f"DIFFERENT ({a[0]} vs {b_[0]} entries)"
                print(f"trees: {same}, {a[0]} entries")
                checked = True
            subprocess.run(["rm", "-rf", "--one-file-system", rd], check=False)
        mo, mu = statistics.median(ours), statistics.median(oracle)
        print(f"ruripy pull           median {mo:.3f} s  ({', '.join(f'{x:.2f}' for x in ours)})")
        print(f"skopeo + umoci unpack median {mu:.3f} s  ({', '.join(f'{x:.2f}' for x in oracle)})")
        print(f"ratio ruripy/oracle   {mo / mu:.2f}")
    finally:
        reg.stop()
        subprocess.run(["rm", "-rf", "--one-file-system", work], check=False)


if __name__ == "__main__":
    main()
