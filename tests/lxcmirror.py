"""A fake LXC image server for tests: the tree of images.md 5.6 served from loopback.

`build_mirror(root, products)` writes images/<d>/<r>/<a>/<v>/<serial>/{rootfs.tar.xz,
meta.tar.xz, incus.tar.xz, SHA256SUMS}, meta/1.0/index-{system,user} and
streams/v1/{index.json,images.json}. `MirrorServer` serves a folder on 127.0.0.1 (port 0)
with or without Range support, under an optional path prefix, and can drop a connection
halfway through a file once, serve a corrupted file, answer an error status, or go slowly.
It records every request (path and headers) so tests can count downloads.
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import json
import lzma
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERIAL = "20240929_23:08"
BUSYBOX = "/bin/busybox"
SETUID_FILE = "usr/bin/setuid-test"
OWNED_FILE = "home/user/owned-by-1000"


def host_arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf"}.get(m, m)


def _busybox_tree(path: str) -> str:
    try:
        from conftest import busybox_rootfs  # the shared fixture, when running under pytest
    except ImportError:
        busybox_rootfs = None
    if busybox_rootfs is not None:
        return busybox_rootfs(path)
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user", "usr/bin"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    for a in ("sh", "ls", "cat", "id", "stat", "uname"):
        os.symlink("busybox", os.path.join(path, "bin", a))
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    return path


def rootfs_tar(os_release: str = "debian", extra: dict[str, bytes] | None = None) -> bytes:
    """An uncompressed rootfs tarball as LXC builds look: `./` names, root-owned, /dev nodes,
    an absolute symlink, a hard link, a setuid file and a file owned by uid 1000."""
    tmp = tempfile.mkdtemp(prefix="lxcmirror.")
    try:
        tree = _busybox_tree(os.path.join(tmp, "rootfs"))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:

            def root_owned(ti: tarfile.TarInfo) -> tarfile.TarInfo:
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = "root"
                return ti

            tar.add(tree, arcname=".", filter=root_owned)

            def member(name, **kw) -> tarfile.TarInfo:
                ti = tarfile.TarInfo("./" + name)
                ti.mtime = 1700000000
                for k, v in kw.items():
                    setattr(ti, k, v)
                return ti

            files = {
                "etc/os-release": f"ID={os_release}\nNAME={os_release}\n".encode(),
                SETUID_FILE: b"#!/bin/sh\necho setuid\n",
                OWNED_FILE: b"mine\n",
            }
            files.update(extra or {})
            for name, data in files.items():
                mode = 0o4755 if name == SETUID_FILE else 0o644
                uid = 1000 if name == OWNED_FILE else 0
                tar.addfile(
                    member(name, size=len(data), mode=mode, uid=uid, gid=uid), io.BytesIO(data)
                )
            tar.addfile(member("usr/share/zoneinfo", type=tarfile.DIRTYPE, mode=0o755))
            data = b"TZif-fake\n"
            tar.addfile(
                member("usr/share/zoneinfo/UTC", size=len(data), mode=0o644), io.BytesIO(data)
            )
            tar.addfile(
                member("etc/localtime", type=tarfile.SYMTYPE, linkname="/usr/share/zoneinfo/UTC")
            )
            tar.addfile(
                member(
                    "usr/bin/busybox-hardlink",
                    type=tarfile.LNKTYPE,
                    linkname="./bin/busybox",
                    mode=0o755,
                )
            )
            tar.addfile(
                member("dev/null", type=tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3)
            )
        return buf.getvalue()
    finally:
        subprocess.run(["rm", "-rf", tmp], check=False)


_XZ_CACHE: dict[str, bytes] = {}


def xz(data: bytes) -> bytes:
    key = hashlib.sha256(data).hexdigest()
    if key not in _XZ_CACHE:
        _XZ_CACHE[key] = lzma.compress(data, format=lzma.FORMAT_XZ, preset=1)
    return _XZ_CACHE[key]


def _small_tar_xz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1700000000
            tar.addfile(ti, io.BytesIO(data))
    return lzma.compress(buf.getvalue(), format=lzma.FORMAT_XZ, preset=0)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Mirror:
    """A mirror tree on disk and what it holds: `files[(distro, release, arch, variant)]`."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.builds: dict[tuple[str, str, str, str], dict] = {}

    def path_of(self, distro, release, arch=None, variant="default", name="rootfs.tar.xz") -> str:
        b = self.builds[(distro, release, arch or host_arch(), variant)]
        return f"{b['dir']}{name}"

    def rootfs_bytes(self, distro, release, arch=None, variant="default") -> bytes:
        with open(os.path.join(self.root, self.path_of(distro, release, arch, variant)), "rb") as f:
            return f.read()


def build_mirror(
    root: str,
    products: list[tuple[str, str, str, str]] | None = None,
    serial: str = SERIAL,
    rootfs: dict[tuple[str, str, str, str], bytes] | None = None,
) -> Mirror:
    """Write an LXC-style tree under `root` for `products` (distro, release, arch, variant)."""
    arch = host_arch()
    if products is None:
        products = [
            ("debian", "bookworm", arch, "default"),
            ("debian", "trixie", arch, "default"),
            ("debian", "bookworm", "arm64" if arch != "arm64" else "amd64", "default"),
            ("alpine", "3.20", arch, "default"),
            ("alpine", "3.20", arch, "cloud"),
            ("ubuntu", "noble", arch, "default"),
        ]
    mirror = Mirror(root)
    csv_lines = []
    streams_products: dict = {}
    for prod in products:
        distro, release, a, variant = prod
        d = f"images/{distro}/{release}/{a}/{variant}/{serial}/"
        folder = os.path.join(root, d)
        os.makedirs(folder, exist_ok=True)
        data = (rootfs or {}).get(prod)
        if data is None:
            data = xz(rootfs_tar(f"{distro}-{release}"))
        meta = _small_tar_xz(
            {
                "config": b"lxc.include = LXC_TEMPLATE_CONFIG/common.conf\n",
                "config-user": b"lxc.include = LXC_TEMPLATE_CONFIG/userns.conf\n",
                "create-message": f"You just created a {distro} {release} container.\n".encode(),
                "expiry": b"2000000000\n",
                "excludes-user": b"./dev/null\n",
            }
        )
        incus = _small_tar_xz(
            {
                "metadata.yaml": (
                    f"architecture: {a}\ncreation_date: 1700000000\nproperties:\n"
                    f"  os: {distro}\n  release: {release}\n  variant: {variant}\n"
                    f'  serial: "{serial}"\n'
                ).encode()
            }
        )
        files = {"rootfs.tar.xz": data, "meta.tar.xz": meta, "incus.tar.xz": incus}
        for name, content in files.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(content)
        with open(os.path.join(folder, "SHA256SUMS"), "w") as f:
            for name, content in sorted(files.items()):
                f.write(f"{sha256(content)}  {name}\n")
        csv_lines.append(f"{distro};{release};{a};{variant};{serial};/{d}\n")
        mirror.builds[prod] = {"dir": d, "sha256": sha256(data), "size": len(data)}
        key = f"{distro}:{release}:{a}:{variant}"
        items = {
            "incus.tar.xz": {
                "ftype": "incus.tar.xz",
                "path": d + "incus.tar.xz",
                "sha256": sha256(incus),
                "size": len(incus),
                "combined_sha256": sha256(incus + data),
                "combined_rootxz_sha256": sha256(incus + data),
            },
            "lxd.tar.xz": {
                "ftype": "lxd.tar.xz",
                "path": d + "incus.tar.xz",
                "sha256": sha256(incus),
                "size": len(incus),
            },
            "root.tar.xz": {
                "ftype": "root.tar.xz",
                "path": d + "rootfs.tar.xz",
                "sha256": sha256(data),
                "size": len(data),
            },
        }
        streams_products[key] = {
            "aliases": f"{distro}/{release}/{variant},{distro}/{release}",
            "arch": a,
            "os": distro.capitalize(),
            "release": release,
            "release_title": release,
            "variant": variant,
            "versions": {serial: {"items": items}},
        }
    meta_dir = os.path.join(root, "meta", "1.0")
    os.makedirs(meta_dir, exist_ok=True)
    for name in ("index-system", "index-user"):
        with open(os.path.join(meta_dir, name), "w") as f:
            f.writelines(csv_lines)
    streams_dir = os.path.join(root, "streams", "v1")
    os.makedirs(streams_dir, exist_ok=True)
    with open(os.path.join(streams_dir, "images.json"), "w") as f:
        json.dump(
            {
                "content_id": "images",
                "datatype": "image-downloads",
                "format": "products:1.0",
                "products": streams_products,
            },
            f,
        )
    with open(os.path.join(streams_dir, "index.json"), "w") as f:
        json.dump(
            {
                "format": "index:1.0",
                "index": {
                    "images": {
                        "datatype": "image-downloads",
                        "path": "streams/v1/images.json",
                        "format": "products:1.0",
                        "products": sorted(streams_products),
                    }
                },
            },
            f,
        )
    return mirror


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        srv = self.server.owner
        raw_path = self.path.split("?", 1)[0]
        path = urllib.parse.unquote(raw_path)
        with srv.lock:
            srv.requests.append((self.command, path, dict(self.headers.items())))
        prefix = srv.prefix
        if not path.startswith(prefix + "/"):
            return self._error(404)
        rel = path[len(prefix) + 1 :]
        status = srv.status.get(rel)
        if status:
            return self._error(status)
        full = os.path.normpath(os.path.join(srv.root, rel))
        if not full.startswith(os.path.abspath(srv.root) + os.sep) or not os.path.isfile(full):
            return self._error(404)
        with open(full, "rb") as f:
            data = f.read()
        if rel in srv.corrupt:
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]
        st = os.stat(full)
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        start = 0
        partial = False
        rng = self.headers.get("Range")
        if srv.ranges and rng and rng.startswith("bytes=") and rng.endswith("-"):
            if_range = self.headers.get("If-Range")
            if if_range is None or if_range == etag:
                try:
                    start = int(rng[6:-1])
                except ValueError:
                    start = 0
                partial = True
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
        body = data[start:]
        self.send_response(206 if partial else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        if srv.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if head:
            return
        drop = False
        with srv.lock:
            if rel in srv.drop_once:
                srv.drop_once.discard(rel)
                drop = True
        if drop:
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            srv.dropped.append((rel, start + half))
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        step = 64 * 1024
        for i in range(0, len(body), step):
            self.wfile.write(body[i : i + step])
            if srv.delay:
                time.sleep(srv.delay)

    def _error(self, code: int) -> None:
        body = f"error {code}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: MirrorServer

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that hung up (killed pulls, dropped connections): expected
        super().handle_error(request, client_address)


class MirrorServer:
    """Serve `root` on 127.0.0.1 at `url` (which ends with `prefix`).

    ranges: honour `Range: bytes=N-` (and If-Range) like a real server, or ignore it like
    Python's http.server. drop_once / corrupt / status are keyed by the path relative to
    the mirror root (e.g. mirror.path_of("debian", "bookworm")). delay sleeps per 64 KB.
    """

    def __init__(self, root: str, *, ranges: bool = True, prefix: str = "") -> None:
        self.root = root
        self.ranges = ranges
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.requests: list[tuple[str, str, dict]] = []
        self.drop_once: set[str] = set()
        self.dropped: list[tuple[str, int]] = []
        self.corrupt: set[str] = set()
        self.status: dict[str, int] = {}
        self.delay = 0.0
        self.lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MirrorServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def gets(self, rel: str) -> list[dict]:
        """Headers of every GET of `rel` (a path relative to the mirror root)."""
        want = f"{self.prefix}/{rel}"
        with self.lock:
            return [h for m, p, h in self.requests if m == "GET" and p == want]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


if __name__ == "__main__":  # build and serve a mirror by hand: python tests/lxcmirror.py DIR
    d = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="mirror.")
    build_mirror(d)
    with MirrorServer(d) as s:
        print(s.url, flush=True)
        threading.Event().wait()
