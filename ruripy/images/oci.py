"""Pull images from OCI/Docker registries (Distribution API v2).

What lives here: reference parsing (`docker://[REGISTRY/]REPO[:TAG|@DIGEST]`), credentials
(docker config.json, containers auth.json), bearer-token and Basic authentication, manifest
negotiation and verification, platform choice in an index, and the image config. Blobs go
through the one downloader (download.py), layers through the one extractor (extract.py), the
finished tree through install.py. See docs images.md section 3.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
import requests.auth

from .. import __version__
from ..errors import RuripyError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_ALIASES = {
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
}

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)
SCHEMA1_TYPES = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
CONFIG_TYPES = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
# Layer media type -> compression it announces (the extractor sniffs the bytes anyway).
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "none",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar": "none",
}
MAX_MANIFEST = 4 << 20
MAX_CONFIG = 8 << 20
MAX_INDEX_DEPTH = 3
TIMEOUT = (15, 60)
TOKEN_MARGIN = 10  # seconds: refresh a token this long before it expires

# ---------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------

_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Za-z0-9=_-]+")
_HOST_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_EXAMPLE = "e.g. docker://alpine:3.20 or docker://ghcr.io/OWNER/IMAGE:TAG"


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. `registry` is the name users see (docker.io for Hub)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """host[:port] that speaks the registry API."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when given, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        s = f"{self.registry}/{self.repository}"
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def _bad_ref(text: str, why: str) -> RuripyError:
    return RuripyError(f"invalid image reference {text!r}: {why} ({_EXAMPLE}).")


def parse_reference(text: str) -> Reference:
    """Parse `docker://[REGISTRY/]REPO[:TAG][@DIGEST]` (the `docker://` prefix is optional)."""
    s = text[len("docker://") :] if text.startswith("docker://") else text
    if not s:
        raise _bad_ref(text, "it names no repository")
    digest = None
    if "@" in s:
        s, digest = s.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise _bad_ref(text, f"{digest!r} is not a digest like sha256:<64 hex digits>")
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
            raise _bad_ref(text, "only sha256 digests (64 lowercase hex digits) are supported")
    parts = s.split("/")
    registry = DOCKER_HUB
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        if not _HOST_RE.fullmatch(first):
            raise _bad_ref(text, f"{first!r} is not a registry host[:port]")
        registry = first.lower()
        if registry in DOCKER_HUB_ALIASES:
            registry = DOCKER_HUB
        parts = parts[1:]
    tag = None
    if ":" in parts[-1]:
        parts[-1], tag = parts[-1].rsplit(":", 1)
        if not _TAG_RE.fullmatch(tag):
            raise _bad_ref(
                text,
                f"tag {tag!r} must be 1 to 128 letters, digits, '_', '.' or '-', "
                "not starting with '.' or '-'",
            )
    for comp in parts:
        if not comp:
            raise _bad_ref(text, "the repository has an empty path component")
        if not _COMPONENT_RE.fullmatch(comp):
            why = "repository names must be lowercase" if comp.lower() != comp else ""
            if not why or not _COMPONENT_RE.fullmatch(comp.lower()):
                why = (
                    f"repository component {comp!r} may only hold lowercase letters, digits "
                    "and single separators '.', '_', '__' or '-' between them"
                )
            raise _bad_ref(text, why)
    if registry == DOCKER_HUB and len(parts) == 1:
        parts = ["library", parts[0]]
    repository = "/".join(parts)
    if len(repository) > 255:
        raise _bad_ref(text, "the repository name is longer than 255 characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, repository, tag, digest)


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port)."""
    h = host
    if h.startswith("["):
        h = h[1 : h.find("]")] if "]" in h else h[1:]
    elif h.count(":") == 1:
        h = h.split(":")[0]
    h = h.lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------
# Architectures and platforms (images.md 2.7 and 3.4)
# ---------------------------------------------------------------------------------------

_ARCHES = {
    "amd64": ("amd64", ""),
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "arm64": ("arm64", "v8"),
    "aarch64": ("arm64", "v8"),
    "armhf": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armv7l": ("arm", "v7"),
    "armv8l": ("arm", "v7"),
    "arm": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv6": ("arm", "v6"),
    "armv6l": ("arm", "v6"),
    "386": ("386", ""),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "x86": ("386", ""),
    "riscv64": ("riscv64", ""),
    "ppc64le": ("ppc64le", ""),
    "ppc64el": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "loong64": ("loong64", ""),
    "loongarch64": ("loong64", ""),
    "mips64le": ("mips64le", ""),
    "mips64el": ("mips64le", ""),
}


@dataclass(frozen=True)
class Platform:
    architecture: str
    variant: str = ""
    os: str = "linux"

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def platform_for(arch: str | None) -> Platform:
    """The OCI platform for `--arch` (any of the Debian, uname, OCI spellings; default host)."""
    text = (arch or os.uname().machine).strip().lower()
    shown = arch or os.uname().machine
    if text.startswith("linux/"):
        text = text[len("linux/") :]
    name, _, variant = text.partition("/")
    if name not in _ARCHES:
        known = "amd64, arm64, armhf (arm/v7), armel (arm/v6), i386, riscv64, ppc64el, s390x"
        raise RuripyError(f"unknown architecture {shown!r}: use one of {known}.")
    oci_arch, default_variant = _ARCHES[name]
    if variant and not re.fullmatch(r"v[0-9]+", variant):
        raise RuripyError(
            f"unknown architecture variant {variant!r} in {shown!r}: use v6, v7 or v8."
        )
    return Platform(oci_arch, variant or default_variant)


def _desc_platform(desc: dict) -> Platform | None:
    p = desc.get("platform")
    if not isinstance(p, dict):
        return None
    a, o, v = p.get("architecture"), p.get("os"), p.get("variant") or ""
    if not isinstance(a, str) or not isinstance(o, str) or not isinstance(v, str):
        return None
    return Platform(a, v, o)


def _is_attestation(desc: dict) -> bool:
    ann = desc.get("annotations")
    if isinstance(ann, dict) and ann.get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    p = _desc_platform(desc)
    return p is not None and p.os == "unknown" and p.architecture == "unknown"


def choose_platform(index: dict, want: Platform) -> dict | None:
    """The first descriptor of `index` for `want`: exact variant first, then one without."""
    candidates = []
    for desc in index.get("manifests") or []:
        if not isinstance(desc, dict) or _is_attestation(desc):
            continue
        if desc.get("mediaType") not in INDEX_TYPES + MANIFEST_TYPES:
            continue
        p = _desc_platform(desc)
        if p is None or p.os != want.os or p.architecture != want.architecture:
            continue
        candidates.append((p, desc))
    for p, desc in candidates:
        if p.variant == want.variant:
            return desc
    for p, desc in candidates:
        if not p.variant:
            return desc
    return None


def index_platforms(index: dict) -> list[str]:
    """The platforms an index offers, attestations and unknown types left out."""
    out = []
    for desc in index.get("manifests") or []:
        if not isinstance(desc, dict) or _is_attestation(desc):
            continue
        if desc.get("mediaType") not in INDEX_TYPES + MANIFEST_TYPES:
            continue
        p = _desc_platform(desc)
        if p is not None and str(p) not in out:
            out.append(str(p))
    return out


# ---------------------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------------------


def auth_files() -> list[str]:
    """Credential files to look in, in order (podman's, then docker's)."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(os.environ["REGISTRY_AUTH_FILE"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "containers", "auth.json"))
    home = os.path.expanduser("~")
    xdg_config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files.append(os.path.join(xdg_config, "containers", "auth.json"))
    docker_dir = os.environ.get("DOCKER_CONFIG") or os.path.join(home, ".docker")
    files.append(os.path.join(docker_dir, "config.json"))
    return files


def _auth_key(key: str) -> str:
    """Normalise an "auths" key: no scheme, no /v1/ or /v2/ suffix, Docker Hub as docker.io."""
    k = key.strip()
    if "://" in k:
        k = k.split("://", 1)[1]
    k = k.rstrip("/")
    for suffix in ("/v1", "/v2"):
        if k.endswith(suffix):
            k = k[: -len(suffix)]
    host, _, path = k.partition("/")
    host = host.lower()
    if host in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    return f"{host}/{path}" if path else host


def find_credentials(ref: Reference) -> tuple[str, str, str] | None:
    """(user, password, file) for `ref`'s registry from the first auth file that has it.

    Keys may name the host or, as podman allows, host/namespace: the longest match wins.
    """
    want_host = ref.registry
    for path in auth_files():
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read(1 << 20))
        except (OSError, ValueError):
            continue
        auths = data.get("auths") if isinstance(data, dict) else None
        if not isinstance(auths, dict):
            continue
        best, best_len = None, -1
        for key, entry in auths.items():
            if not isinstance(key, str) or not isinstance(entry, dict):
                continue
            k = _auth_key(key)
            host, _, ns = k.partition("/")
            if host != want_host:
                continue
            if ns and ref.repository != ns and not ref.repository.startswith(ns + "/"):
                continue
            if len(k) > best_len:
                best, best_len = entry, len(k)
        if best is None:
            continue
        user, pw = best.get("username"), best.get("password")
        if isinstance(best.get("auth"), str) and best["auth"]:
            try:
                user, colon, pw = (
                    base64.b64decode(best["auth"], validate=True).decode().partition(":")
                )
                if not colon or not user:
                    raise ValueError("no user:password")
            except (ValueError, UnicodeDecodeError):
                raise RuripyError(
                    f"the credentials for {want_host} in {path} are not valid base64 of "
                    "user:password; log in again."
                ) from None
        if isinstance(user, str) and isinstance(pw, str) and user:
            return user, pw, path
    return None


# ---------------------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------------------

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> tuple[str, dict[str, str]] | None:
    """`Bearer realm="…",service="…",scope="…"` -> ("bearer", {...})."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return scheme.lower(), params


class RegistryAuth(requests.auth.AuthBase):
    """Adds Authorization for one registry host only, and answers its 401 challenges.

    Attached as the session's `auth`, so every request to the registry (ours and the
    downloader's) gets the header, while redirects to another host never do: requests
    strips Authorization when the host changes and does not re-apply a session auth.
    """

    def __init__(
        self,
        netloc: str,
        repository: str,
        credentials: tuple[str, str, str] | None,
        insecure: bool,
        session: requests.Session,
    ) -> None:
        self.netloc = netloc.lower()
        self.scope = f"repository:{repository}:pull"
        self.credentials = credentials
        self.insecure = insecure
        self.session = session
        self.bearer: dict[str, str] | None = None  # the challenge, to refresh the token
        self.token: str | None = None
        self.expires = 0.0
        self.margin = 0.0
        self.basic = False
        self.token_requests = 0
        self.lock = threading.RLock()  # layer downloads run in threads

    def _mine(self, url: str) -> bool:
        return urlsplit(url).netloc.lower() == self.netloc

    def header(self) -> str | None:
        with self.lock:
            return self._header()

    def _header(self) -> str | None:
        if self.basic and self.credentials:
            raw = f"{self.credentials[0]}:{self.credentials[1]}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if self.bearer is not None:
            if self.token is None or time.time() > self.expires - self.margin:
                self.fetch_token()
            return f"Bearer {self.token}"
        return None

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if not self._mine(r.url):
            return r
        h = self.header()
        if h:
            r.headers["Authorization"] = h
        r.register_hook("response", self.on_response)
        return r

    def on_response(self, resp: requests.Response, **kwargs) -> requests.Response:
        """On a 401 from the registry: authenticate as the challenge says, retry once."""
        if resp.status_code != 401 or not self._mine(resp.url):
            return resp
        challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        tries = getattr(resp.request, "ruripy_tries", 0)
        if challenge is None or tries >= 2:
            return resp
        scheme, params = challenge
        sent = resp.request.headers.get("Authorization")
        with self.lock:
            if scheme == "bearer" and params.get("realm"):
                if params.get("error") == "insufficient_scope" and self.token:
                    return resp  # a token for this scope was refused: nothing to retry
                if not (self.token and sent and sent != f"Bearer {self.token}"):
                    self.bearer = params  # (else another thread renewed it meanwhile)
                    self.basic = False
                    self.fetch_token()
            elif scheme == "basic":
                if not self.credentials:
                    raise RuripyError(
                        f"the registry {self.netloc} requires a login: add credentials with "
                        f"'docker login {self.netloc}' (or podman login)."
                    )
                if self.basic and sent and sent.startswith("Basic "):
                    return resp  # the credentials were already sent: the caller reports it
                self.basic = True
            else:
                return resp
            header = self._header()
        resp.content  # noqa: B018 - drain it so the connection can be reused
        resp.close()
        prep = resp.request.copy()
        prep.headers["Authorization"] = header
        prep.ruripy_tries = tries + 1  # a new token may itself be refused: retry twice at most
        new = resp.connection.send(prep, **kwargs)
        new.history.append(resp)
        new.request = prep
        return self.on_response(new, **kwargs)  # the adapter runs no hooks: check it here

    def fetch_token(self) -> None:
        """Ask the challenge's realm for a pull token (with Basic credentials when we have them)."""
        assert self.bearer is not None
        realm = self.bearer["realm"]
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RuripyError(f"the registry {self.netloc} named a bad token server {realm!r}.")
        if parts.scheme == "http" and not self.insecure and not is_loopback(parts.netloc):
            raise RuripyError(
                f"the registry {self.netloc} wants tokens from plain-http {realm}; "
                "refusing (add --insecure if you trust the network)."
            )
        params = {"scope": self.bearer.get("scope") or self.scope}
        if self.bearer.get("service"):
            params["service"] = self.bearer["service"]
        auth = requests.auth.HTTPBasicAuth(*self.credentials[:2]) if self.credentials else _NoAuth()
        self.token_requests += 1
        try:
            r = self.session.get(realm, params=params, auth=auth, timeout=TIMEOUT)
        except requests.RequestException as e:
            raise RuripyError(f"cannot reach the token server {realm}: {_reason(e)}.") from None
        if r.status_code in (401, 403):
            if self.credentials:
                raise RuripyError(
                    f"the registry {self.netloc} refused the credentials of user "
                    f"{self.credentials[0]!r} (from {self.credentials[2]}); log in again."
                )
            raise RuripyError(
                f"the registry {self.netloc} requires a login: add credentials with "
                f"'docker login {self.netloc}' (or podman login)."
            )
        if r.status_code != 200:
            raise RuripyError(f"the token server {realm} answered HTTP {r.status_code}.")
        try:
            body = r.json()
            token = body.get("token") or body.get("access_token")
            expires_in = int(body.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token, expires_in = None, 0
        if not isinstance(token, str) or not token:
            raise RuripyError(f"the token server {realm} sent no token.")
        self.token = token
        self.expires = time.time() + expires_in
        self.margin = min(TOKEN_MARGIN, expires_in / 4)


class _NoAuth(requests.auth.AuthBase):
    """Overrides the session's auth for requests that must go out without it."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def _reason(e: BaseException) -> str:
    """A short reason for a requests exception, without the urllib3 noise."""
    text = str(e)
    for pat in (r"\[Errno -?\d+\] ([^')\]]+)", r"(Connection refused)", r"(timed out)"):
        m = re.search(pat, text)
        if m:
            return m.group(1).strip()
    if isinstance(e, requests.exceptions.SSLError):
        return "TLS handshake failed"
    return text[:200]


# ---------------------------------------------------------------------------------------
# The registry client
# ---------------------------------------------------------------------------------------


@dataclass
class Manifest:
    media_type: str
    digest: str
    raw: bytes
    doc: dict = field(repr=False)


def _error_codes(resp: requests.Response) -> list[str]:
    try:
        errs = resp.json().get("errors") or []
        return [e.get("code", "") for e in errs if isinstance(e, dict)]
    except (ValueError, AttributeError):
        return []


def _hash(algo: str, data: bytes) -> str:
    if algo not in ("sha256", "sha384", "sha512"):
        raise RuripyError(f"unsupported digest algorithm {algo!r}.")
    return hashlib.new(algo, data).hexdigest()


class Registry:
    """One repository on one registry: manifests, blobs, authentication."""

    def __init__(self, ref: Reference, *, insecure: bool = False) -> None:
        self.ref = ref
        self.insecure = insecure
        # Loopback: plain http (switching to https if the server says it speaks TLS).
        # --insecure: https without certificate checks first, then plain http.
        plain = is_loopback(ref.api_host) and not insecure
        self.base = f"{'http' if plain else 'https'}://{ref.api_host}"
        self.may_switch = True  # until the first answer shows which scheme works
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"ruripy/{__version__}"
        if insecure:
            import urllib3

            self.session.verify = False
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.credentials = find_credentials(ref)
        self.auth = RegistryAuth(
            urlsplit(self.base).netloc, ref.repository, self.credentials, insecure, self.session
        )
        self.session.auth = self.auth

    def url(self, kind: str, reference: str) -> str:
        return f"{self.base}/v2/{self.ref.repository}/{kind}/{reference}"

    def request(self, method: str, url: str, **kw) -> requests.Response:
        """One request with a few retries on connection errors, 429 and 5xx."""
        kw.setdefault("timeout", TIMEOUT)
        for attempt in range(3):
            try:
                resp = self.session.request(method, url, **kw)
            except (requests.ConnectionError, requests.Timeout) as e:
                if self.insecure and self.may_switch and self.base.startswith("https:"):
                    url = self._switch(url, "http")
                    continue
                if isinstance(e, requests.exceptions.SSLError):
                    raise RuripyError(
                        f"TLS with the registry {self.ref.api_host} failed ({_reason(e)}); "
                        "add --insecure if you trust it (a self-signed certificate or plain http)."
                    ) from None
                if attempt == 2:
                    raise RuripyError(
                        f"cannot reach the registry {self.ref.api_host}: {_reason(e)}. Check the "
                        "name and your network."
                    ) from None
                time.sleep(0.3 * (attempt + 1))
                continue
            if (
                resp.status_code == 400
                and self.may_switch
                and self.base.startswith("http:")
                and b"HTTPS server" in resp.content[:200]
            ):
                url = self._switch(url, "https")
                continue
            self.may_switch = False
            if resp.status_code in (429, 502, 503, 504) and attempt < 2:
                delay = resp.headers.get("Retry-After", "")
                resp.close()
                time.sleep(min(float(delay), 10.0) if delay.isdigit() else 0.5 * (attempt + 1))
                continue
            return resp
        raise AssertionError("unreachable")

    def _switch(self, url: str, scheme: str) -> str:
        """Use `scheme` for this registry from now on; `url` rewritten to match."""
        old = self.base
        self.base = f"{scheme}://{self.ref.api_host}"
        self.may_switch = False
        return self.base + url[len(old) :] if url.startswith(old) else url

    def denied(self) -> RuripyError:
        where = f"{self.ref.registry}/{self.ref.repository}"
        if self.credentials:
            return RuripyError(
                f"access to {where} was denied to user {self.credentials[0]!r} (from "
                f"{self.credentials[2]}): the repository does not exist or that user may not "
                "pull it."
            )
        return RuripyError(
            f"access to {where} was denied: the repository does not exist or needs a login "
            "(docker login or podman login)."
        )

    def get_manifest(self, reference: str, method: str = "GET") -> Manifest:
        """Fetch a manifest and check its digest before it is parsed."""
        resp = self.request(
            method, self.url("manifests", reference), headers={"Accept": ACCEPT}, stream=True
        )
        what = f"{self.ref.registry}/{self.ref.repository}"
        at = f"{what}{'@' if reference.startswith('sha256:') else ':'}{reference}"
        with resp:
            if resp.status_code in (401, 403):
                if self.auth.basic:
                    raise RuripyError(
                        f"the registry {self.ref.api_host} refused the credentials of user "
                        f"{self.credentials[0]!r} (from {self.credentials[2]}); log in again."
                    )
                raise self.denied()
            if resp.status_code == 404:
                codes = _error_codes(resp)
                if "NAME_UNKNOWN" in codes or not self.repository_exists():
                    raise RuripyError(
                        f"{self.ref.registry} has no repository {self.ref.repository}; "
                        "check the name."
                    )
                if reference.startswith("sha256:"):
                    raise RuripyError(f"{what} has no manifest {reference}.")
                raise RuripyError(
                    f"{what} has no tag {reference!r} (or the repository does not exist)."
                )
            if resp.status_code != 200:
                raise RuripyError(
                    f"the registry {self.ref.api_host} answered HTTP {resp.status_code} for the "
                    f"manifest of {at}."
                )
            header_digest = resp.headers.get("Docker-Content-Digest", "").strip()
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
            if method == "HEAD":
                return Manifest(ctype, header_digest, b"", {})
            raw = resp.raw.read(MAX_MANIFEST + 1, decode_content=True)
        if len(raw) > MAX_MANIFEST:
            raise RuripyError(f"the manifest of {at} is larger than 4 MiB.")
        expected = reference if reference.startswith("sha256:") else header_digest
        if expected:
            algo, _, want = expected.partition(":")
            if _hash(algo, raw) != want:
                raise RuripyError(
                    f"the manifest of {at} does not match its digest {expected}; "
                    "the registry or the network corrupted it."
                )
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if ctype in SCHEMA1_TYPES:
            raise _schema1(what)
        try:
            doc = json.loads(raw)
        except ValueError:
            raise RuripyError(f"the manifest of {at} is not JSON.") from None
        if not isinstance(doc, dict):
            raise RuripyError(f"the manifest of {at} is not a JSON object.")
        if doc.get("schemaVersion") == 1:
            raise _schema1(what)
        mtype = doc.get("mediaType") or ctype
        if mtype not in INDEX_TYPES + MANIFEST_TYPES:
            # OCI allows a manifest without mediaType; the Content-Type then says what it is.
            raise RuripyError(
                f"{at} has an unsupported manifest type {mtype or '(none)'!r}; "
                "only OCI and Docker schema 2 images can be pulled."
            )
        if doc.get("schemaVersion") != 2:
            raise RuripyError(f"the manifest of {at} is not schemaVersion 2.")
        return Manifest(mtype, digest, raw, doc)

    def repository_exists(self) -> bool:
        """False only when the registry says the repository is unknown (tags/list)."""
        try:
            r = self.request("GET", f"{self.base}/v2/{self.ref.repository}/tags/list?n=1")
        except RuripyError:
            return True
        with r:
            return not (r.status_code == 404 and "NAME_UNKNOWN" in _error_codes(r))

    def blob_url(self, digest: str) -> str:
        return self.url("blobs", digest)


def _schema1(what: str) -> RuripyError:
    return RuripyError(
        f"{what} uses the old Docker schema 1 manifest, which ruripy does not support; "
        "push it again with a current tool."
    )


# ---------------------------------------------------------------------------------------
# Resolving a reference to one image manifest
# ---------------------------------------------------------------------------------------


def resolve(reg: Registry, want: Platform) -> tuple[Manifest, Manifest]:
    """(top-level manifest, image manifest for `want`), following indexes a few levels deep."""
    top = reg.get_manifest(reg.ref.reference)
    m = top
    what = f"{reg.ref}"
    for _ in range(MAX_INDEX_DEPTH + 1):
        if m.media_type in MANIFEST_TYPES:
            check_image_manifest(m, what)
            return top, m
        desc = choose_platform(m.doc, want)
        if desc is None:
            have = index_platforms(m.doc)
            listed = ", ".join(have) if have else "none"
            raise RuripyError(
                f"{what} has no image for {want}; it has: {listed}. Choose one with --arch."
            )
        digest = desc.get("digest")
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            raise RuripyError(f"{what} lists a manifest with a bad digest {digest!r}.")
        m = reg.get_manifest(digest)
    raise RuripyError(f"{what} nests image indexes more than {MAX_INDEX_DEPTH} levels deep.")


def _check_desc(d: object, what: str) -> dict:
    if (
        not isinstance(d, dict)
        or not isinstance(d.get("digest"), str)
        or not re.fullmatch(r"sha256:[0-9a-f]{64}", d["digest"])
        or not isinstance(d.get("size"), int)
        or d["size"] < 0
    ):
        raise RuripyError(f"the manifest of {what} has a malformed descriptor {d!r:.120}.")
    return d


def check_image_manifest(m: Manifest, what: str) -> None:
    """Refuse artifacts and unknown layer types before anything is downloaded."""
    doc = m.doc
    config = doc.get("config")
    if doc.get("artifactType") or (
        isinstance(config, dict) and config.get("mediaType") == EMPTY_CONFIG
    ):
        raise RuripyError(f"{what} is an OCI artifact, not a container image.")
    _check_desc(config, what)
    if config.get("mediaType") not in CONFIG_TYPES:
        raise RuripyError(
            f"{what} has a config of type {config.get('mediaType')!r}: not a container image."
        )
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise RuripyError(f"the manifest of {what} has no layer list.")
    for layer in layers:
        _check_desc(layer, what)
        if layer.get("mediaType") not in LAYER_TYPES:
            raise RuripyError(f"{what} has a layer of unsupported type {layer.get('mediaType')!r}.")


def image_config(raw: bytes, what: str) -> dict:
    """The parsed config blob (architecture, os, rootfs.diff_ids, config.*)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise RuripyError(f"the config of {what} is not JSON.") from None
    if not isinstance(doc, dict):
        raise RuripyError(f"the config of {what} is not a JSON object.")
    return doc


def _str_list(v: object) -> list[str] | None:
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return list(v)
    return None


def runtime_defaults(config: dict) -> dict:
    """The container defaults saved in image.json: env, command, entrypoint, workdir, user."""
    c = config.get("config")
    if not isinstance(c, dict):
        return {}
    out: dict = {}
    env = _str_list(c.get("Env"))
    if env:
        out["env"] = [e for e in env if "=" in e and not e.startswith("=")]
    for key, name in (("Cmd", "command"), ("Entrypoint", "entrypoint")):
        v = _str_list(c.get(key))
        if v:
            out[name] = v
    if isinstance(c.get("WorkingDir"), str) and c["WorkingDir"]:
        out["workdir"] = c["WorkingDir"]
    if isinstance(c.get("User"), str) and c["User"]:
        out["user"] = c["User"]
    return out


def warn(msg: str) -> None:
    print(f"ruripy: warning: {msg}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# Layers: decompression by content, diff_id check
# ---------------------------------------------------------------------------------------

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
)


def sniff(head: bytes) -> str:
    """Compression of a layer by its first bytes: gzip, zstd, xz or none."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "none"


class HashingReader:
    """A read-only file object over the *decompressed* layer that hashes what it yields."""

    def __init__(self, raw, kind: str) -> None:
        self.raw = raw
        if kind == "gzip":
            import gzip

            self.inner = gzip.GzipFile(fileobj=raw, mode="rb")
        elif kind == "zstd":
            import zstandard

            self.inner = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        elif kind == "xz":
            import lzma

            self.inner = lzma.LZMAFile(raw)
        else:
            self.inner = raw
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        b = self.inner.read(n if n is not None and n >= 0 else 1 << 30)
        self.hash.update(b)
        self.count += len(b)
        return b

    def readable(self) -> bool:
        return True

    def drain(self) -> str:
        """Read what the tar reader left (end blocks, padding); return the sha256 digest."""
        while self.read(1 << 20):
            pass
        return "sha256:" + self.hash.hexdigest()

    def close(self) -> None:
        if self.inner is not self.raw:
            self.inner.close()


# ---------------------------------------------------------------------------------------
# The pull
# ---------------------------------------------------------------------------------------


def _download(
    reg: Registry, store, desc: dict, label: str, quiet: bool, *, session=None, progress=None
) -> str:
    """Fetch one blob into the shared cache (verified while streaming); return its path."""
    from ..errors import DiskFull
    from .download import fetch

    digest = desc["digest"]
    path = store.blob_path(digest)
    if os.path.exists(path):
        return path
    try:
        fetch(
            reg.blob_url(digest),
            path,
            sha256=digest.split(":", 1)[1],
            size=desc["size"],
            session=session or reg.session,
            progress=progress,
            quiet=quiet,
            label=label,
        )
    except DiskFull:
        raise  # pull() says where space ran out
    except RuripyError as e:
        raise RuripyError(_registry_words(str(e), reg)) from None
    return path


PARALLEL = 4  # layers downloaded at the same time (skopeo copies up to 6)


class _Cancelled(BaseException):
    """Stops a download thread (raised from its progress callback; not an Exception, so
    the downloader's retry loop lets it through)."""


class LayerDownloads:
    """Download an image's layers, PARALLEL at a time, announcing each to the extractor.

    Runs in the pulling process while the helper extracts (install.install_image's
    `fetch`). Layers already in the cache are announced at once. Threads take layers in
    manifest order, each with its own requests session (sharing the registry's auth); a
    layer is announced only once its blob is complete and matches its digest (renamed
    into the cache by the downloader), so the helper never reads an unverified byte.
    The first failure stops the other downloads (their `.part` files stay, to be
    resumed) and is raised; if the helper fails first, the downloads stop and this
    returns, so that the helper's error is the one reported. One progress bar counts the
    bytes of all layers.
    """

    def __init__(self, reg: Registry, store, layers: list[dict], quiet: bool) -> None:
        self.reg = reg
        self.store = store
        self.layers = layers
        self.quiet = quiet
        self.cancel = threading.Event()
        self.lock = threading.Lock()
        self.done: dict[str, int] = {}
        self.bar = None

    def __call__(self, announcer) -> None:
        n = len(self.layers)
        where: dict[str, list[int]] = {}  # digest -> layer indexes (a blob may repeat)
        for i, desc in enumerate(self.layers):
            where.setdefault(desc["digest"], []).append(i)
        todo = []
        for digest, idx in where.items():
            if os.path.exists(self.store.blob_path(digest)):
                for i in idx:
                    announcer.notify(i)
            else:
                todo.append(self.layers[idx[0]])
        if not todo:
            return
        from .download import Bar

        total = sum(d["size"] for d in todo)
        self.bar = Bar(
            f"Downloading {len(todo)} of {n} layer{'s' if n != 1 else ''}", total, self.quiet
        )
        results: queue.Queue = queue.Queue()
        pending = list(reversed(todo))
        threads = [
            threading.Thread(target=self._worker, args=(pending, results), daemon=True)
            for _ in range(min(PARALLEL, len(todo)))
        ]
        try:
            for t in threads:
                t.start()
            left = len(todo)
            while left:
                try:
                    digest, err = results.get(timeout=0.05)
                except queue.Empty:
                    if announcer.gone():
                        return  # the helper failed: its error is the one to report
                    continue
                left -= 1
                if err is not None:
                    raise err
                for i in where[digest]:
                    if not announcer.notify(i):
                        return
        finally:
            self.cancel.set()  # a thread stops at its next chunk; a stalled one is not waited for
            deadline = time.monotonic() + 5
            for t in threads:
                t.join(timeout=max(0.0, deadline - time.monotonic()))
            self.bar.close()

    def _worker(self, pending: list[dict], results: queue.Queue) -> None:
        import requests

        session = requests.Session()
        session.headers.update(self.reg.session.headers)
        session.verify = self.reg.session.verify
        session.auth = self.reg.auth
        with session:
            while not self.cancel.is_set():
                with self.lock:
                    if not pending:
                        return
                    desc = pending.pop()
                digest = desc["digest"]

                def progress(done: int, total=None, digest=digest) -> None:
                    if self.cancel.is_set():
                        raise _Cancelled
                    with self.lock:
                        self.done[digest] = done
                        self.bar(sum(self.done.values()))

                try:
                    _download(self.reg, self.store, desc, digest, True, session=session,
                              progress=progress)  # fmt: skip
                except _Cancelled:
                    return
                except BaseException as e:  # raised again by the main thread
                    results.put((digest, e))
                    return
                results.put((digest, None))


def _registry_words(msg: str, reg: Registry) -> str:
    """The downloader speaks of mirrors; for a registry say what applies."""
    return msg.replace(" or pass another --mirror", "").replace(
        "pass another --mirror", f"check the registry {reg.ref.api_host}"
    )


def _apply_layers(
    layers: list[tuple[str, str, str | None]], rootfs: str, rootless: bool, what: str, ready=None
):
    """Extract every cached layer, in order, into `rootfs` (runs in the user namespace).

    `ready(i)` (install.Ready) waits until layer i (from 0) is downloaded and verified, so
    layer i is extracted while later ones still download. Each layer's blob was verified
    when it was downloaded; the decompressed tar stream is hashed on the way into the
    extractor and compared with the config's diff_id.
    """
    from .extract import Trash

    totals: dict = {}
    n = len(layers)
    created: set = set()  # files the layers made: a hard link may name one of a lower layer
    with Trash(rootfs.rstrip("/") + ".trash") as trash:
        for i, (path, digest, diff_id) in enumerate(layers, 1):
            stats = _apply_layer(
                i, n, path, digest, diff_id, rootfs, rootless, what, ready, trash, created
            )
            for k, v in (stats or {}).items():
                if isinstance(v, int) and not isinstance(v, bool):
                    totals[k] = totals.get(k, 0) + v
    totals["layers"] = n
    return totals


def _apply_layer(
    i: int, n: int, path: str, digest: str, diff_id, rootfs: str, rootless: bool, what: str,
    ready, trash, created: set,
) -> dict:  # fmt: skip
    """Extract layer i of n (from 1) once `ready` says it is verified; check its diff_id."""
    from ..errors import disk_full
    from .extract import extract

    label = f"layer {i}/{n} ({digest[:19]}) of {what}"
    if ready is not None:
        ready(i - 1)
    with open(path, "rb") as raw:
        kind = sniff(raw.read(8))
        raw.seek(0)
        reader = HashingReader(raw, kind)
        try:
            stats = extract(
                reader, rootfs, rootless=rootless, whiteouts=True, label=label, trash=trash,
                created=created,
            )  # fmt: skip
            got = reader.drain()
        except RuripyError:
            raise
        except Exception as e:  # a decompressor's own error type
            if disk_full(e):
                raise  # pull() says where space ran out
            raise RuripyError(
                f"{label} is truncated or corrupt ({type(e).__name__}: {e})."
            ) from None
        finally:
            reader.close()
    if diff_id and got != diff_id:
        raise RuripyError(
            f"{label} unpacks to {got}, not the diff_id {diff_id} its config names; "
            "the image is broken."
        )
    return stats


def pull(
    store,
    image: str,
    *,
    arch: str | None = None,
    insecure: bool = False,
    quiet: bool = False,
) -> dict:
    """Pull `docker://…` into the image store; return the new image.json."""
    from .install import install_image

    ref = parse_reference(image)
    want = platform_for(arch)
    reg = Registry(ref, insecure=insecure)
    what = str(ref)
    current = up_to_date(store, reg, want)
    if current is not None:
        if not quiet:
            print(f"{what} is up to date ({current['digest']})", file=sys.stderr)
        return current
    top, m = resolve(reg, want)
    cdesc = m.doc["config"]
    config = image_config(_read_blob(_download(reg, store, cdesc, f"config of {what}", True)), what)
    got_arch = config.get("architecture")
    got_variant = config.get("variant") or ""
    if got_arch and got_arch != want.architecture:
        warn(f"{what} was chosen for {want} but its config says architecture {got_arch!r}.")
    layers = m.doc["layers"]
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        if diff_ids is not None:
            raise RuripyError(
                f"the config of {what} names {len(diff_ids) if isinstance(diff_ids, list) else 0}"
                f" layer digests for {len(layers)} layers; the image is broken."
            )
        diff_ids = [None] * len(layers)
    total = sum(d["size"] for d in layers)
    if not quiet:
        print(
            f"Pulling {what} ({want}, {len(layers)} layers, {total / 1e6:.1f} MB)",
            file=sys.stderr,
            flush=True,
        )
    paths = [(store.blob_path(d["digest"]), d["digest"], diff_ids[i]) for i, d in enumerate(layers)]
    meta = {
        "name": what,
        "kind": "oci",
        "source": f"docker://{what}",
        "digest": top.digest,
        "manifest_digest": m.digest,
        "arch": want.architecture + (f"/{got_variant or want.variant}" if want.variant else ""),
        "platform": str(want),
        "config": runtime_defaults(config),
        "layers": [d["digest"] for d in layers],
        "size": total,
    }
    rootless = os.geteuid() != 0

    def feed(rootfs: str, ready) -> dict:
        return _apply_layers(paths, rootfs, rootless, what, ready)

    fetch = LayerDownloads(reg, store, layers, quiet)
    return install_image(store, what, meta, feed, fetch=fetch, quiet=quiet)


def up_to_date(store, reg: Registry, want: Platform) -> dict | None:
    """The installed image.json when the registry still has the same digest (a free HEAD)."""
    from .install import image_by_name

    found = image_by_name(store, str(reg.ref))
    if found is None:
        return None
    meta = dict(found[1], id=found[0], up_to_date=True)
    if meta.get("kind") != "oci" or meta.get("platform") != str(want) or not meta.get("digest"):
        return None
    if reg.ref.digest:
        return meta if meta["digest"] == reg.ref.digest else None
    try:
        head = reg.get_manifest(reg.ref.reference, method="HEAD")
    except RuripyError:
        return None  # the GET that follows explains what is wrong
    return meta if head.digest == meta["digest"] else None


def _read_blob(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(MAX_CONFIG + 1)
