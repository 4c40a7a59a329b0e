"""`ruripy pull docker://…` with layers in flight at once: downloads run side by side and
layer N is unpacked as soon as its blob is verified and the layers below it are in.

A proxy in front of Debian's docker-registry (tests/registry.HoldingProxy) holds chosen
blobs back, so layers arrive late, out of order, half-way, or not at all.
"""

import glob
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time

import pytest
import registry
import requests
from conftest import TEST_ROOT
from registry import make_tar

from ruripy.store import Store

GZ = "application/vnd.oci.image.layer.v1.tar+gzip"

pytestmark = pytest.mark.registry


class Fixture:
    def __init__(self, root: str) -> None:
        self.reg = registry.RegistryProcess(
            os.path.join(root, "reg"), os.path.join(root, "storage")
        )
        self.proxy = registry.HoldingProxy(self.reg.url)

    def stop(self) -> None:
        self.proxy.stop()
        self.reg.stop()

    def push(self, repo: str, layers: list[bytes]) -> list[str]:
        """Push gzip layers as repo:1; return their digests."""
        registry.push_image(self.reg.url, repo, "1", [(data, GZ) for data in layers])
        return [registry.sha256_digest(data) for data in layers]


@pytest.fixture(scope="module")
def fx():
    why = registry.missing_tools()
    if why:
        pytest.skip(why)
    if os.geteuid() != 0:
        pytest.skip("the registry fixture runs as root")
    os.makedirs(TEST_ROOT, exist_ok=True)
    root = tempfile.mkdtemp(prefix="pipeline.", dir=TEST_ROOT)
    f = Fixture(root)
    yield f
    f.stop()
    shutil.rmtree(root, ignore_errors=True)


def layer(entries) -> bytes:
    return gzip.compress(make_tar(entries), 1)


def unique() -> tuple[str, bytes]:
    """A file no other test's layer has (so no blob is shared between tests)."""
    return ("etc/unique", os.urandom(16).hex().encode())


def wait_for(cond, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def image_dir(runner, ref: str) -> str:
    return runner.host_path("images", Store(runner.home).image_id(ref))


def files(root: str) -> dict:
    """path -> file content, or None for a folder."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames:
            out[os.path.relpath(os.path.join(dirpath, n), root)] = None
        for n in filenames:
            with open(os.path.join(dirpath, n), "rb") as f:
                out[os.path.relpath(os.path.join(dirpath, n), root)] = f.read()
    return out


def fails(r, *words: str) -> str:
    """Exit 125 with one error line that holds every word; returns the line."""
    assert r.returncode == 125, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("ruripy: ")]
    assert len(errors) == 1 and r.stderr.rstrip("\n").endswith(errors[0]), r.stderr
    for w in words:
        assert w in errors[0], (w, errors[0])
    return errors[0]


def assert_nothing_installed(runner) -> None:
    for where in ("images", "tmp"):
        path = runner.host_path(where)
        assert not os.path.isdir(path) or os.listdir(path) == [], (where, os.listdir(path))


def cache(runner) -> dict:
    """Cache file name -> True when its content has that sha256 (False: it does not)."""
    folder = runner.host_path("cache", "blobs", "sha256")
    out = {}
    for n in os.listdir(folder) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, n), "rb") as f:
            out[n] = hashlib.sha256(f.read()).hexdigest() == n
    return out


def staged(runner, rel: str) -> bool:
    """Whether a pull's staging rootfs already holds `rel` (the pull is unpacking)."""
    return bool(glob.glob(runner.host_path("tmp", "*", "rootfs", rel)))


class Background:
    """`runner(*args)` in a thread, so the test can act while it runs."""

    def __init__(self, runner, *args: str) -> None:
        self.result = None
        self.thread = threading.Thread(target=self._run, args=(runner, args), daemon=True)
        self.started = time.monotonic()
        self.thread.start()

    def _run(self, runner, args) -> None:
        self.result = runner(*args, timeout=180)
        self.took = time.monotonic() - self.started

    def wait(self):
        self.thread.join(200)
        assert self.result is not None
        return self.result


def test_layers_arriving_out_of_order_give_the_exact_tree(fx, runner):
    """Layer 1 arrives last: layers 2 and 3 wait, verified, until it is in and unpacked."""
    l1 = layer([("etc/", None), ("etc/one", b"1\n"), ("etc/gone", b"g\n"), ("opt/", None),
                ("opt/old", b"o\n"), ("usr/", None), ("usr/lib/", None),
                ("usr/lib/keep", b"v1\n"), unique()])  # fmt: skip
    l2 = layer([("etc/two", b"2\n"), ("etc/.wh.gone", b""), ("opt/.wh..wh..opq", b""),
                ("opt/new", b"n\n"), unique()])  # fmt: skip
    l3 = layer([("etc/three", b"3\n"), ("usr/lib/keep", b"v3\n"), unique()])
    d1, d2, d3 = fx.push("pipe/order", [l1, l2, l3])
    ref = f"{fx.proxy.host}/pipe/order:1"
    fx.proxy.hold(d1)
    pull = Background(runner, "pull", f"docker://{ref}", "--quiet")
    # Layers 2 and 3 come in while layer 1 is held (one after another, they never would).
    both = wait_for(lambda: fx.proxy.when("end", d2) and fx.proxy.when("end", d3))
    fx.proxy.release(d1)
    r = pull.wait()
    assert r.returncode == 0, r.stderr
    assert both, fx.proxy.events
    assert fx.proxy.when("end", d1) > max(fx.proxy.when("end", d2), fx.proxy.when("end", d3))
    root = os.path.join(image_dir(runner, ref), "rootfs")
    got = files(root)
    assert len(got.pop("etc/unique")) == 32
    assert got == {
        "etc": None, "etc/one": b"1\n", "etc/two": b"2\n", "etc/three": b"3\n",
        "opt": None, "opt/new": b"n\n",
        "usr": None, "usr/lib": None, "usr/lib/keep": b"v3\n",
    }  # fmt: skip
    assert sorted(os.listdir(image_dir(runner, ref))) == ["image.json", "rootfs"]
    assert os.listdir(runner.host_path("tmp")) == []
    c = cache(runner)
    assert all(c.values()) and {d1[7:], d2[7:], d3[7:]} <= set(c) and len(c) == 4  # + config


def test_a_layer_is_unpacked_while_later_ones_download(fx, runner):
    l1 = layer([("etc/", None), ("etc/first", b"f\n"), unique()])
    l2 = layer([("etc/second", b"s\n"), unique()])
    d1, d2 = fx.push("pipe/early", [l1, l2])
    ref = f"{fx.proxy.host}/pipe/early:1"
    fx.proxy.hold(d2)
    pull = Background(runner, "pull", f"docker://{ref}", "--quiet")
    early = wait_for(lambda: staged(runner, "etc/first"))
    still_held = fx.proxy.when("end", d2) is None
    fx.proxy.release(d2)
    r = pull.wait()
    assert r.returncode == 0, r.stderr
    assert early and still_held  # layer 1 was on disk while layer 2 had not arrived
    root = os.path.join(image_dir(runner, ref), "rootfs")
    assert open(f"{root}/etc/first").read() + open(f"{root}/etc/second").read() == "f\ns\n"


def test_repeated_layer_is_downloaded_once(fx, privileged):
    """The same blob twice in one manifest (empty layers often are): one GET, applied twice."""
    a = layer([("etc/", None), ("etc/a", b"a\n"), unique()])
    b = layer([("etc/.wh.a", b""), ("etc/b", b"b\n")])
    da, db, _ = fx.push("pipe/twice", [a, b, a])
    mark = fx.reg.mark()
    r = privileged("pull", f"docker://{fx.reg.host}/pipe/twice:1", "--quiet")
    assert r.returncode == 0, r.stderr
    gets = [e[1].rsplit("/", 1)[1] for e in fx.reg.since(mark) if "/blobs/" in e[1]]
    assert (gets.count(da), gets.count(db), len(gets)) == (1, 1, 3)  # and the config
    root = os.path.join(image_dir(privileged, f"{fx.reg.host}/pipe/twice:1"), "rootfs")
    assert sorted(os.listdir(f"{root}/etc")) == ["a", "b", "unique"]


def test_corrupt_layer_2_while_layer_1_unpacks(fx, runner):
    """Layer 2 fails its digest check after layer 1 started unpacking: nothing is installed,
    layer 1 stays in the cache (it was verified), layer 2 is not kept at all."""
    many = [("usr/", None), ("usr/share/", None)]
    many += [(f"usr/share/f{i:04d}", os.urandom(32)) for i in range(1500)]
    l1 = layer([("etc/", None), ("etc/first", b"f\n"), unique(), *many])
    l2 = layer([("etc/second", b"s\n"), unique()])
    d1, d2 = fx.push("pipe/corrupt", [l1, l2])
    with open(fx.reg.blob_path(d2), "r+b") as f:
        f.seek(len(l2) // 2)
        f.write(b"\0" * 16)
    ref = f"{fx.proxy.host}/pipe/corrupt:1"
    fx.proxy.hold(d2)
    pull = Background(runner, "pull", f"docker://{ref}")
    unpacking = wait_for(lambda: staged(runner, "etc/first"))
    fx.proxy.release(d2)
    r = pull.wait()
    assert unpacking
    fails(r, "corrupt", d2[7:])
    assert_nothing_installed(runner)
    c = cache(runner)
    assert c[d1[7:]] is True and all(c.values())
    assert not [n for n in c if n.startswith(d2[7:]) or n.endswith(".part")], c


def test_bad_layer_1_stops_the_pull_without_waiting_for_layer_2(fx, runner):
    """Layer 2 stalls half-way; layer 1 is not a tar: the pull fails at once with layer 1's
    error, keeps the half of layer 2 it has, and the next pull resumes it (Range, 206)."""
    bad = gzip.compress(b"just some text\n" * 100)
    l2 = layer([("etc/", None), ("etc/second", os.urandom(2_000_000)), unique()])
    d1, d2 = fx.push("pipe/stall", [bad, l2])
    ref = f"{fx.proxy.host}/pipe/stall:1"
    part = runner.host_path("cache", "blobs", "sha256", d2[7:] + ".part")
    half = len(l2) // 2
    fx.proxy.hold(d1)  # the bad layer 1 arrives once some of layer 2 is on disk
    fx.proxy.hold(d2, after=half)
    try:
        pull = Background(runner, "pull", f"docker://{ref}")
        # (the downloader writes whole chunks: the last one of the half waits for more)
        assert wait_for(lambda: os.path.exists(part) and os.path.getsize(part) > 0)
        fx.proxy.release(d1)
        r = pull.wait()
        fails(r, "layer 1/2", "not a tar archive")
        assert pull.took < 60  # the stalled download was not waited for (held up to 120 s)
        assert fx.proxy.when("end", d2) is None
    finally:
        fx.proxy.release()
    assert_nothing_installed(runner)
    with open(part, "rb") as f:
        kept = f.read()
    assert 0 < len(kept) < len(l2) and l2.startswith(kept)
    # Another image with the same layer 2 and a good layer 1 resumes the part.
    good = layer([("etc/", None), ("etc/first", b"f\n"), unique()])
    fx.push("pipe/stall2", [good, l2])
    mark = len(fx.proxy.events)
    r = runner("pull", f"docker://{fx.proxy.host}/pipe/stall2:1", "--quiet")
    assert r.returncode == 0, r.stderr
    again = [e for e in fx.proxy.events[mark:] if e[1] == d2 and e[0] == "start"]
    assert [e[3] for e in again] == [f"bytes={len(kept)}-"], again
    root = os.path.join(image_dir(runner, f"{fx.proxy.host}/pipe/stall2:1"), "rootfs")
    assert open(f"{root}/etc/first").read() == "f\n"
    assert all(cache(runner).values()) and not [n for n in cache(runner) if ".part" in n]


def test_two_layers_failing_at_once_give_one_error(fx, privileged, workdir):
    """Both blobs are gone from the registry (404): one error line, nothing left."""
    l1 = layer([("etc/", None), ("etc/first", b"f\n"), unique()])
    l2 = layer([("etc/second", b"s\n"), unique()])
    storage = os.path.join(workdir, "gone-storage")
    reg = registry.RegistryProcess(os.path.join(workdir, "gone"), storage)
    try:
        registry.push_image(reg.url, "pipe/gone", "1", [(l1, GZ), (l2, GZ)])
        manifest = json.loads(
            requests.get(
                f"{reg.url}/v2/pipe/gone/manifests/1",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            ).content
        )
        for d in manifest["layers"]:  # the blobs vanish: the registry answers 404
            os.unlink(reg.blob_path(d["digest"]))
        r = privileged("pull", f"docker://{reg.host}/pipe/gone:1")
    finally:
        reg.stop()
    fails(r, "was not found", reg.host)
    assert_nothing_installed(privileged)
    assert all(cache(privileged).values())
