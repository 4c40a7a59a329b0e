"""Registry test fixtures: Debian's real docker-registry, a token server, images built with umoci.

Everything binds loopback (127.0.0.1, and 127.0.0.2 for the redirect target). Pieces:

- `RegistryProcess`: `docker-registry serve CONFIG` on 127.0.0.1:<port the registry chose>,
  optionally with token auth, htpasswd (Basic) auth, or blob redirects; its access log
  tells which requests came in and with which status.
- `TokenServer`: an in-process token endpoint issuing RS256 JWTs signed with a key and
  certificate made by the openssl CLI (images.md 5.2). Anonymous clients get `pull` except
  on `private/*`; the Basic user `alice:secret` gets everything.
- `StaticServer`: serves a folder with Range support and records the request headers (the
  redirect target, to prove that no Authorization header followed a redirect).
- `HoldingProxy`: forwards to a registry and holds chosen blobs back until released (layers
  that arrive late or out of order).
- `ImageBuilder`: OCI layouts built with umoci (layers with whiteouts and opaque folders),
  indexes written by hand, pushed with `skopeo copy`; images pushed by hand (zstd, plain
  tar, broken layers) through the registry API.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.parse
import warnings
from functools import partial

import requests

REGISTRY_BIN = "/usr/bin/docker-registry"
SERVICE = "ruripy-test-registry"
ISSUER = "ruripy-test-issuer"
USERS = {"alice": "secret"}
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MISSING_TOOLS_REASON = None


def missing_tools() -> str | None:
    """Why the registry tests cannot run here, or None."""
    for tool, pkg in (
        (REGISTRY_BIN, "docker-registry"),
        ("/usr/bin/skopeo", "skopeo"),
        ("/usr/bin/umoci", "umoci"),
        ("/usr/bin/openssl", "openssl"),
        ("/bin/busybox", "busybox-static"),
    ):
        if not os.access(tool, os.X_OK):
            return f"{tool} is missing (apt-get install {pkg})"
    return None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------
# The registry process
# ---------------------------------------------------------------------------------------

_ACCESS_RE = re.compile(r'^\S+ - (\S+) \[[^\]]+\] "(\w+) (\S+) HTTP/[\d.]+" (\d+) ')


class RegistryProcess:
    """One `docker-registry serve` process on 127.0.0.1:<port>."""

    def __init__(
        self,
        workdir: str,
        storage: str,
        *,
        token: TokenServer | None = None,
        htpasswd: dict[str, str] | None = None,
        redirect_to: str | None = None,
        tls: bool = False,
    ) -> None:
        os.makedirs(workdir, exist_ok=True)
        self.workdir = workdir
        self.storage = storage
        self.log_path = os.path.join(workdir, "registry.log")
        lines = [
            "version: 0.1",
            "log: {level: info}",
            "storage:",
            f"  filesystem: {{rootdirectory: {storage}}}",
            "  delete: {enabled: true}",
            "  maintenance: {uploadpurging: {enabled: false}}",
            "http:",
            "  addr: 127.0.0.1:0",
            f"  secret: {os.urandom(16).hex()}",
        ]
        self.cert_path = None
        if tls:
            self.cert_path = os.path.join(workdir, "tls.crt")
            key = os.path.join(workdir, "tls.key")
            _run(
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                "-out", self.cert_path, "-days", "3650", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            )  # fmt: skip
            lines += ["  tls:", f"    certificate: {self.cert_path}", f"    key: {key}"]
        if token is not None:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {token.url}/token",
                f"    service: {SERVICE}",
                f"    issuer: {ISSUER}",
                f"    rootcertbundle: {token.cert_path}",
            ]
        elif htpasswd:
            path = os.path.join(workdir, "htpasswd")
            with open(path, "w") as f:
                for user, pw in htpasswd.items():
                    f.write(f"{user}:{bcrypt_hash(pw)}\n")
            lines += ["auth:", f"  htpasswd: {{realm: ruripy-test, path: {path}}}"]
        if redirect_to:
            lines += [
                "middleware:",
                "  storage:",
                "    - name: redirect",
                "      options:",
                f"        baseurl: {redirect_to.rstrip('/')}/",
            ]
        self.config_path = os.path.join(workdir, "config.yml")
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", self.config_path],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.port = self._wait_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", f.read())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        with open(self.log_path, "rb") as f:
            tail = f.read()[-2000:].decode("utf-8", "replace")
        raise RuntimeError(f"docker-registry did not start:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def access_log(self) -> list[tuple[str, str, int, str]]:
        """Every request so far as (method, path, status, user)."""
        out = []
        with open(self.log_path, "rb") as f:
            for line in f.read().decode("utf-8", "replace").splitlines():
                m = _ACCESS_RE.match(line)
                if m:
                    out.append((m.group(2), m.group(3), int(m.group(4)), m.group(1)))
        return out

    def mark(self) -> int:
        """A position in the access log; `since(mark)` lists the requests after it."""
        return len(self.access_log())

    def since(self, mark: int) -> list[tuple[str, str, int, str]]:
        return self.access_log()[mark:]

    def blob_path(self, digest: str) -> str:
        """The file holding a blob in the filesystem storage (to corrupt it on purpose)."""
        hexpart = digest.split(":", 1)[1]
        return os.path.join(
            self.storage, "docker/registry/v2/blobs/sha256", hexpart[:2], hexpart, "data"
        )


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for an htpasswd file, from the system's libcrypt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))
    if not h or not h.startswith("$2"):
        raise RuntimeError("this libcrypt cannot make bcrypt hashes")
    return h


# ---------------------------------------------------------------------------------------
# Small in-process HTTP servers
# ---------------------------------------------------------------------------------------


class _Server:
    """A ThreadingHTTPServer running in a daemon thread."""

    def __init__(self, handler, host: str = "127.0.0.1") -> None:
        self.httpd = http.server.ThreadingHTTPServer((host, 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def send_body(self, code: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class TokenServer(_Server):
    """Issues registry tokens (RS256 JWT, x5c = the self-signed certificate)."""

    def __init__(self, workdir: str) -> None:
        os.makedirs(workdir, exist_ok=True)
        self.key_path = os.path.join(workdir, "token.key")
        self.cert_path = os.path.join(workdir, "token.crt")
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", self.key_path, "-out", self.cert_path, "-days", "3650",
                "-subj", "/CN=ruripy-test-issuer",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", self.cert_path, "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[dict] = []
        self.expire_next = 0  # how many of the next tokens are issued already expired
        self.lock = threading.Lock()
        super().__init__(partial(_TokenHandler, self))

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key_path],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def grant(self, user: str | None, scope: str) -> dict | None:
        """What `user` may do within one requested scope `repository:NAME:ACTIONS`."""
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            return None
        wanted = [a for a in actions.split(",") if a]
        if user in USERS:
            allowed = wanted
        elif name.startswith("private/"):
            allowed = []
        else:
            allowed = [a for a in wanted if a == "pull"]
        return {"type": "repository", "name": name, "actions": allowed}

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


class _TokenHandler(_QuietHandler):
    def __init__(self, server_obj: TokenServer, *args, **kw) -> None:
        self.token_server = server_obj
        super().__init__(*args, **kw)

    def do_GET(self) -> None:
        ts = self.token_server
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        user = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                u, p = "", ""
            if USERS.get(u) != p:
                with ts.lock:
                    ts.requests.append({"user": u, "scopes": query.get("scope", []), "ok": False})
                body = json.dumps({"details": "incorrect username or password"}).encode()
                self.send_body(401, body, "application/json")
                return
            user = u
        if url.path != "/token" or query.get("service") != [SERVICE]:
            self.send_body(400, b'{"details":"bad request"}', "application/json")
            return
        access = [g for s in query.get("scope", []) if (g := ts.grant(user, s))]
        now = int(time.time())
        with ts.lock:
            ts.requests.append({"user": user, "scopes": query.get("scope", []), "ok": True})
            expired = ts.expire_next > 0
            if expired:
                ts.expire_next -= 1
        exp = now - 100 if expired else now + 300
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": SERVICE,
            "exp": exp,
            "nbf": now - 200,
            "iat": now - 200,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        token = ts.sign(claims)
        body = {
            "token": token,
            "access_token": token,
            "expires_in": 300,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        }
        self.send_body(200, json.dumps(body).encode(), "application/json")


class StaticServer(_Server):
    """Serves a folder with `Range: bytes=N-` support; records (path, headers) per request."""

    def __init__(self, directory: str, host: str = "127.0.0.1") -> None:
        self.directory = directory
        self.requests: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        super().__init__(partial(_StaticHandler, self), host)


class _StaticHandler(_QuietHandler):
    def __init__(self, server_obj: StaticServer, *args, **kw) -> None:
        self.static = server_obj
        super().__init__(*args, **kw)

    def do_GET(self) -> None:
        st = self.static
        with st.lock:
            st.requests.append((self.path, dict(self.headers.items())))
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        path = os.path.realpath(os.path.join(st.directory, rel))
        if not path.startswith(os.path.realpath(st.directory) + "/") or not os.path.isfile(path):
            self.send_body(404, b"not found\n", "text/plain")
            return
        with open(path, "rb") as f:
            data = f.read()
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if m and int(m.group(1)) < len(data):
            start = int(m.group(1))
            self.send_body(
                206,
                data[start:],
                "application/octet-stream",
                {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
            )
            return
        self.send_body(200, data, "application/octet-stream", {"Accept-Ranges": "bytes"})


class FakeRegistry(_Server):
    """A registry that answers from a table: path -> (status, headers, body).

    For answers the real registry never gives: schema 1, unknown manifest types,
    a Docker-Content-Digest that does not match the body.
    """

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict, bytes]] = {}
        self.requests: list[tuple[str, str, dict]] = []
        super().__init__(partial(_FakeHandler, self))
        self.host = f"127.0.0.1:{self.port}"


class _FakeHandler(_QuietHandler):
    def __init__(self, server_obj: FakeRegistry, *args, **kw) -> None:
        self.fake = server_obj
        super().__init__(*args, **kw)

    def do_GET(self) -> None:
        self.fake.requests.append((self.command, self.path, dict(self.headers.items())))
        status, headers, body = self.fake.routes.get(
            self.path,
            (
                404,
                {},
                b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]}',
            ),
        )
        headers = dict(headers)
        ctype = headers.pop("Content-Type", "application/json")
        self.send_body(status, body, ctype, headers)

    do_HEAD = do_GET


class CuttingProxy(_Server):
    """Forwards to a registry, but cuts the first download of each large blob in half.

    Records (method, path, Range header, status) per request, so a test can see the
    downloader come back with `Range: bytes=N-` and get 206.
    """

    def __init__(self, upstream: str, cut_over: int = 4096) -> None:
        self.upstream = upstream.rstrip("/")
        self.cut_over = cut_over
        self.cut: set[str] = set()
        self.requests: list[tuple[str, str, str | None, int]] = []
        self.lock = threading.Lock()
        self.session = requests.Session()
        super().__init__(partial(_ProxyHandler, self))
        self.host = f"127.0.0.1:{self.port}"


_PASS_UP = ("Authorization", "Accept", "Range", "If-Range", "User-Agent")
_PASS_DOWN = (
    "Content-Type", "Content-Range", "Docker-Content-Digest", "ETag", "Accept-Ranges",
    "WWW-Authenticate", "Location", "Docker-Distribution-Api-Version",
)  # fmt: skip


class _ProxyHandler(_QuietHandler):
    def __init__(self, server_obj: CuttingProxy, *args, **kw) -> None:
        self.proxy = server_obj
        super().__init__(*args, **kw)

    def do_GET(self) -> None:
        px = self.proxy
        headers = {k: self.headers[k] for k in _PASS_UP if self.headers.get(k)}
        r = px.session.request(
            self.command, px.upstream + self.path, headers=headers, allow_redirects=False
        )
        body = r.content
        with px.lock:
            px.requests.append((self.command, self.path, self.headers.get("Range"), r.status_code))
            cut = (
                self.command == "GET"
                and "/blobs/" in self.path
                and r.status_code == 200
                and len(body) > px.cut_over
                and self.path not in px.cut
            )
            if cut:
                px.cut.add(self.path)
        self.send_response(r.status_code)
        for k in _PASS_DOWN:
            if r.headers.get(k):
                self.send_header(k, r.headers[k])
        self.send_header("Content-Length", r.headers.get("Content-Length", str(len(body))))
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    do_HEAD = do_GET


class HoldingProxy(_Server):
    """Forwards to a registry, but holds back the answer for chosen blobs until released.

    `hold(digest)` keeps the next GET of that blob waiting (two minutes at most) until
    `release(digest)` (or `release()` for all); `hold(digest, after=N)` sends the headers
    and the first N bytes before it waits. `events` lists (what, digest, time, Range
    header) per blob request: "start" when it arrives, "end" once the whole answer was
    sent. Each request is forwarded on its own connection, so held and free blobs travel
    at the same time.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.held: dict[str, list] = {}  # digest -> [event, after, taken by a request]
        self.events: list[tuple[str, str, float, str | None]] = []
        self.lock = threading.Lock()
        super().__init__(partial(_HoldingHandler, self))
        self.host = f"127.0.0.1:{self.port}"

    def hold(self, digest: str, after: int = 0) -> None:
        self.held[digest] = [threading.Event(), after, False]

    def release(self, digest: str | None = None) -> None:
        for d, (ev, _, _) in list(self.held.items()):
            if digest is None or d == digest:
                ev.set()

    def record(self, what: str, digest: str, rng: str | None = None) -> None:
        with self.lock:
            self.events.append((what, digest, time.monotonic(), rng))

    def when(self, what: str, digest: str) -> float | None:
        """When the first request for `digest` started or ended (None: not yet)."""
        with self.lock:
            return next((t for w, d, t, _ in self.events if w == what and d == digest), None)

    def stop(self) -> None:
        self.release()
        super().stop()


class _HoldingHandler(_QuietHandler):
    def __init__(self, server_obj: HoldingProxy, *args, **kw) -> None:
        self.proxy = server_obj
        super().__init__(*args, **kw)

    def do_GET(self) -> None:
        px = self.proxy
        digest = self.path.rsplit("/", 1)[-1] if "/blobs/" in self.path else None
        hold, after = None, 0
        if digest:
            px.record("start", digest, self.headers.get("Range"))
            with px.lock:
                entry = px.held.get(digest)
                if self.command == "GET" and entry and not entry[2]:
                    entry[2] = True  # only the first request is held
                    hold, after = entry[0], entry[1]
        if hold is not None and not after:
            hold.wait(120)
        headers = {k: self.headers[k] for k in _PASS_UP if self.headers.get(k)}
        r = requests.request(
            self.command, px.upstream + self.path, headers=headers, allow_redirects=False
        )
        body = r.content
        self.send_response(r.status_code)
        for k in _PASS_DOWN:
            if r.headers.get(k):
                self.send_header(k, r.headers[k])
        self.send_header("Content-Length", r.headers.get("Content-Length", str(len(body))))
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            if hold is not None and after:
                self.wfile.write(body[:after])
                self.wfile.flush()
                hold.wait(120)
                body = body[after:]
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            return  # the client went away
        if digest:
            px.record("end", digest)

    do_HEAD = do_GET


# ---------------------------------------------------------------------------------------
# Building and pushing images
# ---------------------------------------------------------------------------------------


def _run(*argv: str, cwd: str | None = None) -> str:
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


class ImageBuilder:
    """OCI image layouts built with umoci and hand-written indexes, pushed with skopeo."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.layout = os.path.join(workdir, "oci")
        os.makedirs(workdir, exist_ok=True)
        if not os.path.exists(os.path.join(self.layout, "oci-layout")):
            _run("umoci", "init", "--layout", self.layout)

    # -- the layout ------------------------------------------------------------------------
    def image(self, tag: str) -> str:
        return f"{self.layout}:{tag}"

    def write_blob(self, data: bytes) -> dict:
        digest = sha256_digest(data)
        path = os.path.join(self.layout, "blobs", "sha256", digest.split(":")[1])
        with open(path, "wb") as f:
            f.write(data)
        return {"digest": digest, "size": len(data)}

    def read_index(self) -> dict:
        with open(os.path.join(self.layout, "index.json")) as f:
            index = json.load(f)
        index["manifests"] = index.get("manifests") or []
        return index

    def descriptor(self, tag: str) -> dict:
        for d in self.read_index()["manifests"]:
            if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return d
        raise KeyError(tag)

    def read_blob(self, digest: str) -> bytes:
        with open(os.path.join(self.layout, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
            return f.read()

    def add_ref(self, tag: str, desc: dict) -> None:
        index = self.read_index()
        index["manifests"] = [
            d
            for d in index["manifests"]
            if d.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
        ]
        d = dict(desc)
        d["annotations"] = {"org.opencontainers.image.ref.name": tag}
        index["manifests"].append(d)
        with open(os.path.join(self.layout, "index.json"), "w") as f:
            json.dump(index, f)

    # -- images ----------------------------------------------------------------------------
    def _unpack(self, tag: str) -> str:
        bundle = os.path.join(self.workdir, f"bundle-{tag}")
        shutil.rmtree(bundle, ignore_errors=True)
        _run("umoci", "unpack", "--image", self.image(tag), bundle)
        return bundle

    def _repack(self, tag: str, bundle: str) -> None:
        _run("umoci", "repack", "--image", self.image(tag), bundle)
        shutil.rmtree(bundle, ignore_errors=True)

    def whiteout_image(self, tag: str, arch: str = "amd64", marker: str | None = None) -> None:
        """Three layers: a busybox rootfs; a whiteout and an addition; an opaque folder.

        Result after applying them: etc/delete-me gone, etc/added present, etc/conf.d holds
        only c.conf, keepdir/ gone, etc/arch says `marker`.
        """
        _run("umoci", "new", "--image", self.image(tag))
        bundle = self._unpack(tag)
        root = os.path.join(bundle, "rootfs")
        for d in ("bin", "etc/conf.d", "keepdir", "root", "tmp", "proc", "sys", "dev"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        os.chmod(os.path.join(root, "tmp"), 0o1777)
        shutil.copy2("/bin/busybox", os.path.join(root, "bin", "busybox"))
        for applet in ("sh", "ls", "cat", "env", "pwd", "id", "echo"):
            os.symlink("busybox", os.path.join(root, "bin", applet))
        files = {
            "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
            "etc/group": "root:x:0:\nuser:x:1000:\n",
            "etc/delete-me": "lower layer\n",
            "etc/conf.d/a.conf": "a\n",
            "etc/conf.d/b.conf": "b\n",
            "keepdir/old": "old\n",
            "etc/arch": (marker or arch) + "\n",
        }
        for rel, text in files.items():
            with open(os.path.join(root, rel), "w") as f:
                f.write(text)
        with open(os.path.join(root, "etc", "owned"), "w") as f:
            f.write("owned by 1000\n")
        os.chown(os.path.join(root, "etc", "owned"), 1000, 1000)
        os.chown(os.path.join(root, "keepdir", "old"), 1000, 1000)
        self._repack(tag, bundle)
        _run(
            "umoci", "config", "--image", self.image(tag),
            "--config.cmd", "/bin/sh", "--config.entrypoint", "/bin/busybox",
            "--config.env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "--config.env", "RURI_TEST=1",
            "--config.workingdir", "/root", "--config.user", "0:0",
            "--os", "linux", "--architecture", arch,
        )  # fmt: skip
        bundle = self._unpack(tag)
        root = os.path.join(bundle, "rootfs")
        os.unlink(os.path.join(root, "etc", "delete-me"))
        with open(os.path.join(root, "etc", "added"), "w") as f:
            f.write("added\n")
        self._repack(tag, bundle)
        stage = os.path.join(self.workdir, f"stage-{tag}")
        shutil.rmtree(stage, ignore_errors=True)
        os.makedirs(os.path.join(stage, "etc", "conf.d"))
        for rel in ("etc/conf.d/c.conf", "etc/conf.d/.wh..wh..opq", ".wh.keepdir"):
            with open(os.path.join(stage, rel), "w") as f:
                f.write("c\n" if rel.endswith("c.conf") else "")
        layer = os.path.join(self.workdir, f"layer3-{tag}.tar")
        # The opaque marker after its sibling, as GNU tar and umoci write it (images.md 3.8).
        with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tf:
            for rel in ("etc", "etc/conf.d", "etc/conf.d/c.conf", "etc/conf.d/.wh..wh..opq",
                        ".wh.keepdir"):  # fmt: skip
                ti = tf.gettarinfo(os.path.join(stage, rel), rel)
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                if ti.isfile():
                    with open(os.path.join(stage, rel), "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
        _run("umoci", "raw", "add-layer", "--image", self.image(tag), layer)
        shutil.rmtree(stage, ignore_errors=True)

    def marker_image(self, tag: str, arch: str, variant: str | None, marker: str) -> None:
        """One layer with etc/arch = `marker` (for platforms this host does not run)."""
        _run("umoci", "new", "--image", self.image(tag))
        bundle = self._unpack(tag)
        root = os.path.join(bundle, "rootfs")
        os.makedirs(os.path.join(root, "etc"))
        with open(os.path.join(root, "etc", "arch"), "w") as f:
            f.write(marker + "\n")
        self._repack(tag, bundle)
        _run("umoci", "config", "--image", self.image(tag), "--os", "linux",
             "--architecture", arch)  # fmt: skip
        if variant:
            self._set_variant(tag, variant)

    def _set_variant(self, tag: str, variant: str) -> None:
        """umoci 0.4.7 has no variant flag: rewrite the config and manifest by hand."""
        desc = self.descriptor(tag)
        manifest = json.loads(self.read_blob(desc["digest"]))
        config = json.loads(self.read_blob(manifest["config"]["digest"]))
        config["variant"] = variant
        c = self.write_blob(json.dumps(config).encode())
        manifest["config"].update(c)
        m = self.write_blob(json.dumps(manifest).encode())
        self.add_ref(tag, {"mediaType": OCI_MANIFEST, **m})

    def attestation(self) -> dict:
        """A BuildKit-style attestation manifest descriptor (platform unknown/unknown)."""
        statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1"}).encode()
        layer = self.write_blob(statement)
        config = self.write_blob(json.dumps({"architecture": "unknown", "os": "unknown"}).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **config},
            "layers": [{"mediaType": "application/vnd.in-toto+json", **layer}],
        }
        m = self.write_blob(json.dumps(manifest).encode())
        return {
            "mediaType": OCI_MANIFEST,
            **m,
            "platform": {"architecture": "unknown", "os": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        }

    def index(self, tag: str, entries: list[tuple[str | dict, dict | None]]) -> dict:
        """An OCI index of (image tag or ready descriptor, platform) entries, tagged `tag`."""
        manifests = []
        for ref, plat in entries:
            if isinstance(ref, dict):
                manifests.append(ref)
                continue
            d = self.descriptor(ref)
            manifests.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": d["digest"],
                    "size": d["size"],
                    "platform": plat,
                }  # fmt: skip
            )
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        desc = {"mediaType": OCI_INDEX, **self.write_blob(json.dumps(doc).encode())}
        self.add_ref(tag, desc)
        return desc

    def push(self, tag: str, dest: str, *, all_: bool = False, v2s2: bool = False) -> None:
        """skopeo copy oci:LAYOUT:TAG docker://DEST (DEST = host:port/repo:tag)."""
        argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if all_:
            argv.append("--all")
        if v2s2:
            argv += ["--format", "v2s2"]
        _run(*argv, f"oci:{self.layout}:{tag}", f"docker://{dest}")


def push_blob(session: requests.Session, base: str, repo: str, data: bytes) -> dict:
    """Upload one blob through the registry API (monolithic POST + PUT)."""
    digest = sha256_digest(data)
    r = session.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, (r.status_code, r.text)
    loc = urllib.parse.urljoin(base, r.headers["Location"])
    sep = "&" if "?" in loc else "?"
    r = session.put(
        f"{loc}{sep}digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, (r.status_code, r.text)
    return {"digest": digest, "size": len(data)}


def push_image(
    base: str,
    repo: str,
    tag: str,
    layers: list[tuple[bytes, str]],
    *,
    config: dict | None = None,
    manifest_extra: dict | None = None,
) -> str:
    """Push an image made of raw layer blobs (bytes, media type); returns the manifest digest."""
    s = requests.Session()
    descs = []
    diff_ids = []
    for data, mtype in layers:
        descs.append({"mediaType": mtype, **push_blob(s, base, repo, data)})
        diff_ids.append(sha256_digest(_decompress(data)))
    cfg = config or {
        "architecture": _host_oci_arch(),
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    cdesc = {"mediaType": OCI_CONFIG, **push_blob(s, base, repo, json.dumps(cfg).encode())}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc, "layers": descs}
    manifest.update(manifest_extra or {})
    body = json.dumps(manifest).encode()
    r = s.put(
        f"{base}/v2/{repo}/manifests/{tag}",
        data=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, (r.status_code, r.text)
    return r.headers["Docker-Content-Digest"]


def _decompress(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError):
            return data
    if data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return data


def _host_oci_arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


def make_tar(entries: list[tuple[str, bytes | None]], links: dict | None = None) -> bytes:
    """A tar of (name, content) entries; content None makes a directory. `links` adds hard
    links {name: target} (mode 0755) after them."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        hard = [(name, ("link", target)) for name, target in (links or {}).items()]
        for name, content in [*entries, *hard]:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if isinstance(content, tuple):
                ti.type, ti.linkname, ti.mode = tarfile.LNKTYPE, content[1], 0o755
                tf.addfile(ti)
            elif content is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            else:
                ti.size = len(content)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(content))
    return buf.getvalue()


def zstd_frames(data: bytes, parts: int = 2) -> bytes:
    """`data` compressed as several zstd frames back to back."""
    import zstandard

    step = max(1, len(data) // parts)
    cctx = zstandard.ZstdCompressor(level=3)
    return b"".join(cctx.compress(data[i : i + step]) for i in range(0, len(data), step))
