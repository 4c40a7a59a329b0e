"""`ruripy pull docker://…`: references, auth, manifests, platforms, layers, config.

The first part checks the registry-protocol pieces directly (pure functions); the rest
drives the real CLI against Debian's docker-registry on loopback (tests/registry.py).
"""

import base64
import gzip
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile

import pytest
import registry
import requests
from conftest import TEST_ROOT
from registry import make_tar

from ruripy.errors import RuripyError
from ruripy.images import oci

DA = "sha256:" + "a" * 64
DB = "sha256:" + "b" * 64

# ---------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, registry, repo, tag, digest",
    [
        ("docker://alpine", "docker.io", "library/alpine", "latest", None),
        ("docker://alpine:3.20", "docker.io", "library/alpine", "3.20", None),
        ("alpine:3.20", "docker.io", "library/alpine", "3.20", None),
        ("docker://docker.io/library/alpine:3.20", "docker.io", "library/alpine", "3.20", None),
        ("docker://index.docker.io/alpine", "docker.io", "library/alpine", "latest", None),
        ("docker://registry-1.docker.io/x/y", "docker.io", "x/y", "latest", None),
        ("docker://bitnami/redis:7.2", "docker.io", "bitnami/redis", "7.2", None),
        ("docker://ghcr.io/owner/img:v1", "ghcr.io", "owner/img", "v1", None),
        ("docker://Quay.IO/a/b/c", "quay.io", "a/b/c", "latest", None),
        ("docker://localhost/foo", "localhost", "foo", "latest", None),
        ("docker://localhost:5000/a/b:c", "localhost:5000", "a/b", "c", None),
        ("docker://127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", None),
        ("docker://[::1]:5000/x:y", "[::1]:5000", "x", "y", None),
        ("docker://a__b/c--d.e_f:T_a.g-1", "docker.io", "a__b/c--d.e_f", "T_a.g-1", None),
        ("docker://alpine@" + DA, "docker.io", "library/alpine", None, DA),
        ("docker://alpine:3@" + DB, "docker.io", "library/alpine", "3", DB),
    ],
)  # fmt: skip
def test_reference_parsing(text, registry, repo, tag, digest):
    ref = oci.parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repo, tag, digest)


def test_reference_names_and_api_hosts():
    ref = oci.parse_reference("docker://alpine:3.20")
    assert str(ref) == "docker.io/library/alpine:3.20"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.reference == "3.20"
    ref = oci.parse_reference("docker://127.0.0.1:5000/test/bb@sha256:" + "c" * 64)
    assert str(ref) == "127.0.0.1:5000/test/bb@sha256:" + "c" * 64
    assert ref.api_host == "127.0.0.1:5000"
    assert ref.reference == "sha256:" + "c" * 64


@pytest.mark.parametrize(
    "text, words",
    [
        ("docker://", "names no repository"),
        ("docker://Alpine", "must be lowercase"),
        ("docker://ghcr.io/Owner/img", "must be lowercase"),
        ("docker://a//b", "empty path component"),
        ("docker://a/", "empty path component"),
        ("docker://foo:", "tag ''"),
        ("docker://foo:-bad", "tag '-bad'"),
        ("docker://foo:" + "t" * 129, "1 to 128"),
        ("docker://foo_", "repository component 'foo_'"),
        ("docker://a...b", "repository component"),
        ("docker://foo@sha256:abc", "only sha256 digests"),
        ("docker://foo@md5:" + "a" * 32, "only sha256 digests"),
        ("docker://foo@latest", "is not a digest"),
        ("docker://bad_host.io:99999x/a", "not a registry host"),
        ("docker://" + "a" * 256, "longer than 255"),
    ],
)
def test_reference_errors(text, words):
    with pytest.raises(RuripyError) as e:
        oci.parse_reference(text)
    msg = str(e.value)
    assert words in msg
    assert msg.startswith("invalid image reference") and "\n" not in msg


@pytest.mark.parametrize(
    "host, loop",
    [
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("localhost:80", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("10.0.0.1:5000", False),
        ("registry-1.docker.io", False),
        ("127.0.0.1.example.com", False),
    ],
)
def test_loopback_hosts(host, loop):
    assert oci.is_loopback(host) is loop


def test_scheme_https_unless_loopback_or_insecure():
    assert oci.Registry(oci.parse_reference("docker://alpine")).base == (
        "https://registry-1.docker.io"
    )
    assert oci.Registry(oci.parse_reference("docker://localhost:5000/a")).base == (
        "http://localhost:5000"
    )
    insecure = oci.Registry(oci.parse_reference("docker://10.1.1.1:5000/a"), insecure=True)
    assert insecure.base == "https://10.1.1.1:5000" and insecure.session.verify is False
    assert oci.Registry(oci.parse_reference("docker://10.1.1.1:5000/a")).base == (
        "https://10.1.1.1:5000"
    )


# ---------------------------------------------------------------------------------------
# Platforms
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch, want",
    [
        ("amd64", "linux/amd64"),
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64/v8"),
        ("arm64", "linux/arm64/v8"),
        ("armhf", "linux/arm/v7"),
        ("armv7l", "linux/arm/v7"),
        ("armel", "linux/arm/v6"),
        ("arm/v6", "linux/arm/v6"),
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("i686", "linux/386"),
        ("ppc64el", "linux/ppc64le"),
        ("loongarch64", "linux/loong64"),
        ("RISCV64", "linux/riscv64"),
    ],
)
def test_platform_names(arch, want):
    assert str(oci.platform_for(arch)) == want


def test_platform_errors():
    with pytest.raises(RuripyError, match="unknown architecture 'sparc'"):
        oci.platform_for("sparc")
    with pytest.raises(RuripyError, match="variant 'x7'"):
        oci.platform_for("arm/x7")


def _entry(arch, variant=None, mtype=oci.OCI_MANIFEST, os_="linux", n=0, **extra):
    p = {"architecture": arch, "os": os_}
    if variant:
        p["variant"] = variant
    return {"mediaType": mtype, "digest": f"sha256:{n:064x}", "size": 1, "platform": p, **extra}


def test_platform_choice_exact_variant_then_none_and_skips():
    att = _entry(
        "unknown",
        os_="unknown",
        n=1,
        annotations={"vnd.docker.reference.type": "attestation-manifest"},
    )
    index = {
        "manifests": [
            att,
            _entry("arm64", n=2, mtype="application/vnd.example.unknown+json"),
            _entry("arm64", n=3),  # no variant, listed before v8
            _entry("arm64", "v8", n=4),
            _entry("arm", "v6", n=5),
            _entry("arm", "v7", n=6),
            _entry("amd64", n=7),
            _entry("amd64", n=8),  # a second match: the first wins
            _entry("amd64", os_="windows", n=9),
        ]
    }
    pick = lambda a: oci.choose_platform(index, oci.platform_for(a))["digest"]  # noqa: E731
    assert pick("arm64") == f"sha256:{4:064x}"
    assert pick("armhf") == f"sha256:{6:064x}"
    assert pick("armel") == f"sha256:{5:064x}"
    assert pick("amd64") == f"sha256:{7:064x}"
    assert oci.choose_platform(index, oci.platform_for("riscv64")) is None
    assert oci.index_platforms(index) == [
        "linux/arm64",
        "linux/arm64/v8",
        "linux/arm/v6",
        "linux/arm/v7",
        "linux/amd64",
        "windows/amd64",
    ]
    # Only a variant-less arm entry: taken for v7; a v6-only list is not used for v7.
    assert oci.choose_platform({"manifests": [_entry("arm", n=11)]}, oci.platform_for("armhf"))
    assert not oci.choose_platform(
        {"manifests": [_entry("arm", "v6", n=12)]}, oci.platform_for("armhf")
    )


# ---------------------------------------------------------------------------------------
# Challenges, credentials, config
# ---------------------------------------------------------------------------------------


def test_challenge_parsing():
    scheme, p = oci.parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    assert scheme == "bearer"
    assert p == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull",
    }
    scheme, p = oci.parse_challenge('Basic realm="ruripy test"')
    assert (scheme, p) == ("basic", {"realm": "ruripy test"})
    scheme, p = oci.parse_challenge(
        'Bearer realm="http://127.0.0.1:1/token", error="insufficient_scope", scope="a:b:c:pull"'
    )
    assert p["error"] == "insufficient_scope" and p["scope"] == "a:b:c:pull"
    assert oci.parse_challenge("") is None


def _auth(user, pw):
    return base64.b64encode(f"{user}:{pw}".encode()).decode()


def test_credentials_from_auth_files(tmp_path, monkeypatch):
    home = tmp_path / "home"
    run = tmp_path / "run"
    (home / ".docker").mkdir(parents=True)
    (run / "containers").mkdir(parents=True)
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    docker = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": _auth("hubuser", "hubpw")},
            "127.0.0.1:5000": {"auth": _auth("alice", "pa:ss")},
        }
    }
    (home / ".docker" / "config.json").write_text(json.dumps(docker))
    ref = oci.parse_reference
    assert oci.find_credentials(ref("docker://alpine"))[:2] == ("hubuser", "hubpw")
    assert oci.find_credentials(ref("docker://127.0.0.1:5000/a"))[:2] == ("alice", "pa:ss")
    assert oci.find_credentials(ref("docker://127.0.0.1:5001/a")) is None
    # podman's file comes first; host/namespace keys win over the bare host.
    podman = {
        "auths": {
            "127.0.0.1:5000": {"auth": _auth("bob", "b")},
            "127.0.0.1:5000/team": {"auth": _auth("carol", "c")},
        }
    }
    (run / "containers" / "auth.json").write_text(json.dumps(podman))
    user, pw, path = oci.find_credentials(ref("docker://127.0.0.1:5000/team/app"))
    assert (user, pw, path) == ("carol", "c", str(run / "containers" / "auth.json"))
    assert oci.find_credentials(ref("docker://127.0.0.1:5000/teamx/app"))[:2] == ("bob", "b")
    (run / "containers" / "auth.json").write_text('{"auths": {"127.0.0.1:5000": {"auth": "%%"}}}')
    with pytest.raises(RuripyError, match="not valid base64"):
        oci.find_credentials(ref("docker://127.0.0.1:5000/a"))


def test_runtime_defaults_from_config():
    cfg = {
        "architecture": "amd64",
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "A=b=c", "=bad", "noequals"],
            "Cmd": ["/bin/sh"],
            "Entrypoint": ["/bin/busybox"],
            "WorkingDir": "/root",
            "User": "0:0",
            "ExposedPorts": {"80/tcp": {}},
        },
    }
    assert oci.runtime_defaults(cfg) == {
        "env": ["PATH=/usr/bin:/bin", "A=b=c"],
        "command": ["/bin/sh"],
        "entrypoint": ["/bin/busybox"],
        "workdir": "/root",
        "user": "0:0",
    }
    assert oci.runtime_defaults({"architecture": "amd64"}) == {}
    assert oci.runtime_defaults({"config": {"Cmd": None, "Env": "x"}}) == {}


# ---------------------------------------------------------------------------------------
# End to end: the real CLI against Debian's docker-registry on loopback
# ---------------------------------------------------------------------------------------

HOST = oci.platform_for(None)
# Platforms of the multi-arch index, besides the host's own (the full busybox image).
OTHER_PLATFORMS = [
    ("arm", "v6", "arm-v6"),
    ("arm", "v7", "arm-v7"),
    ("arm64", None, "arm64-novariant"),
    ("arm64", "v8", "arm64-v8"),
    ("amd64", None, "amd64-marker"),
]


class Fixtures:
    """The servers and images every end-to-end test shares (built once per module)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.storage = os.path.join(root, "storage")
        self.servers = []
        self.token = self._start(registry.TokenServer(os.path.join(root, "token")))
        self.plain = self._start(registry.RegistryProcess(os.path.join(root, "a"), self.storage))
        self.tokreg = self._start(
            registry.RegistryProcess(os.path.join(root, "c"), self.storage, token=self.token)
        )
        self.cdn = self._start(registry.StaticServer(self.storage, "127.0.0.2"))
        self.basic = self._start(
            registry.RegistryProcess(
                os.path.join(root, "b"),
                self.storage,
                htpasswd=registry.USERS,
                redirect_to=self.cdn.url,
            )
        )
        self.fake = self._start(registry.FakeRegistry())
        self.cutter = self._start(registry.CuttingProxy(self.plain.url))
        self.tls = self._start(
            registry.RegistryProcess(os.path.join(root, "tls"), self.storage, tls=True)
        )
        self.build()

    def _start(self, server):
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for s in reversed(self.servers):
            s.stop()

    def build(self) -> None:
        b = registry.ImageBuilder(os.path.join(self.root, "build"))
        self.builder = b
        host_tag = "bb-host"
        b.whiteout_image(host_tag, HOST.architecture, marker="host")
        entries = [(b.attestation(), None)]
        others = []
        for arch, variant, marker in OTHER_PLATFORMS:
            if arch == HOST.architecture and (variant or "") == HOST.variant:
                continue
            b.marker_image(marker, arch, variant, marker)
            plat = {"architecture": arch, "os": "linux"}
            if variant:
                plat["variant"] = variant
            others.append((marker, plat))
        host_plat = {"architecture": HOST.architecture, "os": "linux"}
        if HOST.variant:
            host_plat["variant"] = HOST.variant
        entries += others + [(host_tag, host_plat)]
        b.index("multi", entries)
        b.index("multi-docker", [e for e in entries if not isinstance(e[0], dict)])
        h = self.plain.host
        b.push(host_tag, f"{h}/test/busybox:single")
        b.push("multi", f"{h}/test/busybox:latest", all_=True)
        b.push("multi", f"{h}/private/busybox:latest", all_=True)
        b.push("multi-docker", f"{h}/test/busybox-docker:latest", all_=True, v2s2=True)
        self.single_digest = self.head("test/busybox", "single")
        self.index_digest = self.head("test/busybox", "latest")

    def head(self, repo: str, tag: str) -> str:
        r = requests.head(
            f"{self.plain.url}/v2/{repo}/manifests/{tag}", headers={"Accept": oci.ACCEPT}
        )
        assert r.status_code == 200, r.status_code
        return r.headers["Docker-Content-Digest"]


@pytest.fixture(scope="module")
def reg():
    why = registry.missing_tools()
    if why:
        pytest.skip(why)
    if os.geteuid() != 0:
        pytest.skip("the registry fixtures build images with umoci as root")
    os.makedirs(TEST_ROOT, exist_ok=True)
    root = tempfile.mkdtemp(prefix="registry.", dir=TEST_ROOT)
    fx = Fixtures(root)
    yield fx
    fx.stop()
    shutil.rmtree(root, ignore_errors=True)


def image_json(runner, name: str) -> dict:
    from ruripy.store import Store

    path = runner.host_path("images", Store(runner.home).image_id(name), "image.json")
    with open(path) as f:
        return json.load(f)


def rootfs_of(runner, name: str) -> str:
    from ruripy.store import Store

    return runner.host_path("images", Store(runner.home).image_id(name), "rootfs")


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def assert_nothing_installed(runner) -> None:
    images = runner.host_path("images")
    assert not os.path.isdir(images) or os.listdir(images) == []
    tmp = runner.host_path("tmp")
    assert not os.path.isdir(tmp) or os.listdir(tmp) == []


def assert_cache_consistent(runner) -> None:
    """Every file under its digest name has that digest; no .part is left behind."""
    cache = runner.host_path("cache", "blobs", "sha256")
    if not os.path.isdir(cache):
        return
    for n in os.listdir(cache):
        assert not n.endswith(".part"), n
        with open(os.path.join(cache, n), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == n


def fails(r, *words: str) -> None:
    """Exit 125 with a one-line error that contains every word."""
    assert r.returncode == 125, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("ruripy: ")]
    assert len(errors) == 1 and r.stderr.rstrip("\n").endswith(errors[0]), r.stderr
    err = errors[0]
    for w in words:
        assert w in err, (w, err)


def subid_base(user: str) -> int:
    with open("/etc/subuid") as f:
        for line in f:
            name, start, _ = line.strip().split(":")
            if name == user:
                return int(start)
    raise AssertionError(f"{user} has no /etc/subuid range")


@pytest.mark.registry
def test_pull_applies_whiteouts_and_saves_config(reg, runner, test_user):
    ref = f"{reg.plain.host}/test/busybox:single"
    r = runner("pull", f"docker://{ref}", "--quiet")
    assert r.returncode == 0, r.stderr
    root = rootfs_of(runner, ref)
    assert read(f"{root}/etc/arch") == "host\n"
    assert not os.path.lexists(f"{root}/etc/delete-me")
    assert read(f"{root}/etc/added") == "added\n"
    assert sorted(os.listdir(f"{root}/etc/conf.d")) == ["c.conf"]
    assert not os.path.lexists(f"{root}/keepdir")
    assert not any(n.startswith(".wh.") for _, ds, fs in os.walk(root) for n in ds + fs)
    assert os.readlink(f"{root}/bin/sh") == "busybox"
    assert os.stat(f"{root}/bin/busybox").st_mode & 0o111
    assert oct(os.stat(f"{root}/tmp").st_mode & 0o7777) == "0o1777"
    owner = os.stat(f"{root}/etc/added").st_uid
    expect_root = os.stat(runner.home).st_uid if runner.rootless else 0
    assert owner == expect_root
    owned = os.stat(f"{root}/etc/owned").st_uid
    assert owned == (subid_base(test_user.pw_name) + 999 if runner.rootless else 1000)
    meta = image_json(runner, ref)
    assert meta["name"] == ref
    assert meta["kind"] == "oci"
    assert meta["digest"] == reg.single_digest
    assert meta["config"] == {
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "RURI_TEST=1"],
        "command": ["/bin/sh"],
        "entrypoint": ["/bin/busybox"],
        "workdir": "/root",
        "user": "0:0",
    }
    assert_cache_consistent(runner)


def fresh(runner, workdir, label: str):
    """Another runner of the same kind with its own empty storage root."""
    from conftest import Runner

    home = os.path.join(workdir, f"home-{label}")
    os.mkdir(home, 0o700)
    if runner.rootless:
        os.chown(home, runner.user.pw_uid, runner.user.pw_gid)
    return Runner(runner.src, home, runner.user)


@pytest.mark.registry
@pytest.mark.parametrize("repo", ["test/busybox", "test/busybox-docker"], ids=["oci", "docker"])
def test_platform_choice(reg, privileged, workdir, repo):
    """OCI index and Docker list: attestation skipped, exact variant first, then none."""
    ref = f"{reg.plain.host}/{repo}:latest"
    cases = [(None, "host"), ("arm64", "arm64-v8"), ("armhf", "arm-v7"), ("aarch64", "arm64-v8")]
    if repo == "test/busybox":
        cases.append(("armel", "arm-v6"))
    for i, (arch, marker) in enumerate(cases):
        if arch and oci.platform_for(arch) == HOST:
            marker = "host"
        r_ = fresh(privileged, workdir, str(i))
        r = r_("pull", f"docker://{ref}", "--quiet", *(["--arch", arch] if arch else []))
        assert r.returncode == 0, (arch, r.stderr)
        assert read(f"{rootfs_of(r_, ref)}/etc/arch") == marker + "\n", arch
        meta = image_json(r_, ref)
        assert meta["platform"] == str(oci.platform_for(arch))
        if repo == "test/busybox":
            assert meta["digest"] == reg.index_digest
    r = privileged("pull", f"docker://{ref}", "--arch", "riscv64")
    fails(r, f"{ref} has no image for linux/riscv64", "it has:", "linux/arm/v7", "--arch")
    assert "unknown" not in r.stderr
    assert_nothing_installed(privileged)


@pytest.mark.registry
def test_pull_name_creates_container_with_image_defaults(reg, runner):
    ref = f"{reg.plain.host}/test/busybox:latest"
    r = runner("pull", f"docker://{ref}", "--name", "web", "--quiet")
    assert r.returncode == 0, r.stderr
    r = runner("images", "--json")
    assert r.returncode == 0, r.stderr
    images = json.loads(r.stdout)
    images = images.get("images", images) if isinstance(images, dict) else images
    mine = [i for i in images if i.get("name") == ref]
    assert len(mine) == 1 and mine[0].get("digest") == reg.index_digest, images
    r = runner("images")
    assert ref.split(":latest")[0] in r.stdout and reg.index_digest[7:19] in r.stdout, r.stdout
    assert os.path.isfile(runner.host_path("containers", "web", "container.rec"))
    r = runner("run", "web", "--", "/bin/sh", "-c", 'echo "$RURI_TEST:$PATH"; pwd; id -u')
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1:/usr/sbin:/usr/bin:/sbin:/bin", "/root", "0"]


@pytest.mark.registry
def test_token_auth_one_token_per_pull(reg, runner):
    ref = f"{reg.tokreg.host}/test/busybox:latest"
    before = reg.token.count()
    r = runner("pull", f"docker://{ref}", "--quiet")
    assert r.returncode == 0, r.stderr
    assert reg.token.count() - before == 1
    last = reg.token.requests[-1]
    assert last["user"] is None and last["scopes"] == ["repository:test/busybox:pull"]
    assert read(f"{rootfs_of(runner, ref)}/etc/arch") == "host\n"


@pytest.mark.registry
def test_token_reauth_after_a_rejected_token(reg, privileged):
    """A token the registry no longer accepts (401) is replaced once, then the pull goes on."""
    ref = f"{reg.tokreg.host}/test/busybox:single"
    before = reg.token.count()
    reg.token.expire_next = 1
    r = privileged("pull", f"docker://{ref}", "--quiet")
    assert r.returncode == 0, r.stderr
    assert reg.token.count() - before == 2
    assert read(f"{rootfs_of(privileged, ref)}/etc/added") == "added\n"


def write_auth(path: str, host: str, user: str, password: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"auths": {host: {"auth": _auth(user, password)}}}, f)
    d = os.path.dirname(path)
    while d.startswith(TEST_ROOT + "/"):
        os.chmod(d, 0o755)
        d = os.path.dirname(d)
    os.chmod(path, 0o644)


@pytest.mark.registry
def test_token_auth_private_repository(reg, runner, workdir):
    ref = f"docker://{reg.tokreg.host}/private/busybox:latest"
    fails(runner("pull", ref), "denied", "private/busybox", "login")
    assert_nothing_installed(runner)
    run = os.path.join(workdir, "xdg-run")
    write_auth(os.path.join(run, "containers", "auth.json"), reg.tokreg.host, "alice", "wrong")
    r = runner("pull", ref, env={"XDG_RUNTIME_DIR": run})
    fails(r, "refused the credentials", "'alice'", "auth.json")
    assert_nothing_installed(runner)
    write_auth(os.path.join(run, "containers", "auth.json"), reg.tokreg.host, "alice", "secret")
    before = reg.token.count()
    r = runner("pull", ref, "--quiet", env={"XDG_RUNTIME_DIR": run})
    assert r.returncode == 0, r.stderr
    assert reg.token.requests[before]["user"] == "alice"


@pytest.mark.registry
def test_basic_auth_and_no_authorization_after_redirect(reg, runner, workdir):
    """Basic credentials from ~/.docker/config.json; blobs redirect from 127.0.0.1 to 127.0.0.2."""
    ref = f"{reg.basic.host}/test/busybox:single"
    fails(runner("pull", f"docker://{ref}"), "requires a login", reg.basic.host)
    home = os.path.join(workdir, "fakehome")
    write_auth(os.path.join(home, ".docker", "config.json"), reg.basic.host, "alice", "nope")
    fails(runner("pull", f"docker://{ref}", env={"HOME": home}), "refused the credentials")
    write_auth(os.path.join(home, ".docker", "config.json"), reg.basic.host, "alice", "secret")
    mark = reg.basic.mark()
    seen = len(reg.cdn.requests)
    r = runner("pull", f"docker://{ref}", "--quiet", env={"HOME": home})
    assert r.returncode == 0, r.stderr
    assert read(f"{rootfs_of(runner, ref)}/etc/added") == "added\n"
    log = reg.basic.since(mark)
    blob_gets = [e for e in log if "/blobs/" in e[1]]
    assert [e[2] for e in log[:2]] == [401, 200], log  # challenge, then Basic credentials
    assert blob_gets and all(e[2] == 307 for e in blob_gets), log
    cdn = reg.cdn.requests[seen:]
    assert len(cdn) == len(blob_gets)
    for path, headers in cdn:
        assert path.startswith("/docker/registry/v2/blobs/sha256/")
        assert "Authorization" not in headers and "authorization" not in headers, headers


@pytest.mark.registry
def test_second_pull_reuses_cached_blobs(reg, privileged):
    a = f"{reg.plain.host}/test/busybox:single"
    b = f"{reg.plain.host}/test/busybox:latest"  # the index: same image for this host
    mark = reg.plain.mark()
    assert privileged("pull", f"docker://{a}", "--quiet").returncode == 0
    first = [e for e in reg.plain.since(mark) if "/blobs/" in e[1]]
    assert len(first) == 4  # config + 3 layers
    mark = reg.plain.mark()
    r = privileged("pull", f"docker://{b}", "--quiet")
    assert r.returncode == 0, r.stderr
    log = reg.plain.since(mark)
    assert [e for e in log if "/blobs/" in e[1]] == []
    assert [e[1] for e in log] == [
        "/v2/test/busybox/manifests/latest",
        f"/v2/test/busybox/manifests/{reg.single_digest}",
    ]
    assert read(f"{rootfs_of(privileged, b)}/etc/added") == "added\n"
    assert_cache_consistent(privileged)


@pytest.mark.registry
def test_resume_from_a_partial_blob(reg, runner):
    """Half a layer left by an interrupted pull is kept: only the rest is fetched (206)."""
    ref = f"{reg.plain.host}/test/busybox:single"
    manifest = json.loads(
        requests.get(
            f"{reg.plain.url}/v2/test/busybox/manifests/single", headers={"Accept": oci.ACCEPT}
        ).content
    )
    big = max(manifest["layers"], key=lambda d: d["size"])
    with open(reg.plain.blob_path(big["digest"]), "rb") as f:
        data = f.read()
    cache = runner.host_path("cache", "blobs", "sha256")
    for d in (runner.home, runner.host_path("cache"), runner.host_path("cache", "blobs"), cache):
        os.makedirs(d, 0o700, exist_ok=True)
        os.chown(d, *(os.stat(runner.home).st_uid, os.stat(runner.home).st_gid))
    part = os.path.join(cache, big["digest"][7:] + ".part")
    with open(part, "wb") as f:
        f.write(data[: len(data) // 2])
    os.chown(part, os.stat(runner.home).st_uid, os.stat(runner.home).st_gid)
    os.chmod(part, 0o600)
    mark = reg.plain.mark()
    r = runner("pull", f"docker://{ref}", "--quiet")
    assert r.returncode == 0, r.stderr
    gets = [e for e in reg.plain.since(mark) if e[1].endswith(big["digest"])]
    assert [e[2] for e in gets] == [206], gets
    assert read(f"{rootfs_of(runner, ref)}/etc/arch") == "host\n"
    assert_cache_consistent(runner)


@pytest.mark.registry
def test_zstd_plain_and_gzip_layers_and_pull_by_digest(reg, privileged):
    base = make_tar([("etc/", None), ("etc/one", b"1\n"), ("etc/gone", b"x\n"), ("opt/", None)])
    zstd_layer = make_tar(
        [("etc/two", b"2\n" * 50000), ("etc/.wh.gone", b""), ("opt/.wh..wh..opq", b"")]
    )
    plain_layer = make_tar([("etc/three", b"3\n")])
    digest = registry.push_image(
        reg.plain.url,
        "test/formats",
        "1",
        [
            (gzip.compress(base), "application/vnd.oci.image.layer.v1.tar+gzip"),
            (registry.zstd_frames(zstd_layer, 3), "application/vnd.oci.image.layer.v1.tar+zstd"),
            (plain_layer, "application/vnd.oci.image.layer.v1.tar"),
        ],
    )
    ref = f"{reg.plain.host}/test/formats@{digest}"
    r = privileged("pull", f"docker://{ref}", "--quiet")
    assert r.returncode == 0, r.stderr
    root = rootfs_of(privileged, ref)
    assert sorted(os.listdir(f"{root}/etc")) == ["one", "three", "two"]
    assert read(f"{root}/etc/two") == "2\n" * 50000
    assert os.listdir(f"{root}/opt") == []
    meta = image_json(privileged, ref)
    assert meta["name"] == ref and meta["digest"] == digest
    assert meta["config"] == {"env": ["PATH=/bin"], "command": ["/bin/sh"]}


@pytest.mark.registry
def test_whiteout_of_a_nested_folder(reg, runner):
    """`rm -rf usr/lib/old` in a later layer: a deep folder and its tree disappear."""
    lower = make_tar(
        [("usr/", None), ("usr/lib/", None), ("usr/lib/old/", None), ("usr/lib/old/sub/", None),
         ("usr/lib/old/sub/f", b"f"), ("usr/lib/keep", b"k"), ("usr/lib/link", None)]
    )  # fmt: skip
    upper = make_tar([("usr/lib/.wh.old", b""), ("usr/lib/.wh.link", b""), ("usr/lib/new", b"n")])
    registry.push_image(reg.plain.url, "test/rmdir", "1", _gz_layers(lower, upper))
    ref = f"{reg.plain.host}/test/rmdir:1"
    r = runner("pull", f"docker://{ref}", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(f"{rootfs_of(runner, ref)}/usr/lib")) == ["keep", "new"]


@pytest.mark.registry
def test_hard_link_to_a_file_of_a_lower_layer(reg, runner):
    """A later layer may hard-link a file a lower layer made (umoci and containerd allow
    it); the link member's mode goes onto the shared file. A link to a file no layer made
    is still refused."""
    lower = make_tar([("usr/", None), ("usr/bin/", None), ("usr/bin/tool", b"#!/bin/sh\n")])
    upper = make_tar([], links={"usr/bin/alias": "usr/bin/tool"})
    registry.push_image(reg.plain.url, "test/hardlink", "1", _gz_layers(lower, upper))
    ref = f"{reg.plain.host}/test/hardlink:1"
    r = runner("pull", f"docker://{ref}", "--quiet")
    assert r.returncode == 0, r.stderr
    root = rootfs_of(runner, ref)
    tool, alias = os.stat(f"{root}/usr/bin/tool"), os.stat(f"{root}/usr/bin/alias")
    assert (alias.st_ino, alias.st_nlink) == (tool.st_ino, 2)
    assert read(f"{root}/usr/bin/alias") == "#!/bin/sh\n"
    assert tool.st_mode & 0o7777 == 0o755
    # a layer that links a file of nothing below it
    only = make_tar([("etc/", None)], links={"etc/x": "usr/bin/tool"})
    registry.push_image(reg.plain.url, "test/hardlink", "2", _gz_layers(only))
    fails(
        runner("pull", f"docker://{reg.plain.host}/test/hardlink:2"),
        "is a hard link to 'usr/bin/tool', which is missing",
    )


def _gz_layers(*tars: bytes) -> list[tuple[bytes, str]]:
    """Layers for registry.push_image: each tar gzip-compressed, with its media type."""
    return [(gzip.compress(t), "application/vnd.oci.image.layer.v1.tar+gzip") for t in tars]


def _tar_gz(entries):
    return gzip.compress(make_tar(entries))


@pytest.mark.registry
def test_unknown_repository_and_tag(reg, runner):
    fails(
        runner("pull", f"docker://{reg.plain.host}/test/nope:1"),
        f"{reg.plain.host} has no repository test/nope",
    )
    fails(
        runner("pull", f"docker://{reg.plain.host}/test/busybox:nope"),
        "has no tag 'nope'",
    )
    fails(runner("pull", "docker://Bad/Name"), "invalid image reference", "lowercase")
    assert_nothing_installed(runner)


@pytest.mark.registry
def test_registry_down(privileged):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fails(privileged("pull", f"docker://127.0.0.1:{port}/a/b:c"), "cannot reach the registry")
    assert_nothing_installed(privileged)


@pytest.mark.registry
def test_layer_digest_mismatch_leaves_cache_consistent(reg, runner):
    good = _tar_gz([("etc/", None), ("etc/unique", os.urandom(64).hex().encode())])
    digest = registry.push_image(
        reg.plain.url, "test/corrupt", "1", [(good, "application/vnd.oci.image.layer.v1.tar+gzip")]
    )
    manifest = json.loads(
        requests.get(
            f"{reg.plain.url}/v2/test/corrupt/manifests/{digest}", headers={"Accept": oci.ACCEPT}
        ).content
    )
    layer = manifest["layers"][0]["digest"]
    with open(reg.plain.blob_path(layer), "r+b") as f:
        f.seek(len(good) // 2)
        f.write(b"\0" * 16)
    r = runner("pull", f"docker://{reg.plain.host}/test/corrupt:1")
    fails(r, "corrupt", layer[7:])
    assert "--mirror" not in r.stderr
    assert_nothing_installed(runner)
    assert_cache_consistent(runner)
    assert not os.path.exists(runner.host_path("cache", "blobs", "sha256", layer[7:]))


@pytest.mark.registry
def test_layer_that_is_not_a_tar(reg, runner):
    for i, (data, mtype) in enumerate(
        [
            (os.urandom(3000), "application/vnd.oci.image.layer.v1.tar"),
            (
                gzip.compress(b"just some text\n" * 100),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ),
            (b"\x1f\x8b\x08\x00garbage", "application/vnd.oci.image.layer.v1.tar+gzip"),
        ]
    ):
        ok = _tar_gz([("etc/", None), ("etc/fine", b"fine\n")])
        layers = [(ok, "application/vnd.oci.image.layer.v1.tar+gzip"), (data, mtype)]
        registry.push_image(reg.plain.url, "test/notar", str(i), layers)
        r = runner("pull", f"docker://{reg.plain.host}/test/notar:{i}")
        fails(r, "layer 2/2")
        assert_nothing_installed(runner)
        assert_cache_consistent(runner)


@pytest.mark.registry
def test_artifacts_are_refused(reg, privileged):
    layer = (b"{}", "application/vnd.oci.image.layer.v1.tar")
    registry.push_image(
        reg.plain.url,
        "test/artifact",
        "1",
        [layer],
        manifest_extra={"artifactType": "application/vnd.example.sbom"},
    )
    fails(privileged("pull", f"docker://{reg.plain.host}/test/artifact:1"), "OCI artifact")
    r = registry.push_image(
        reg.plain.url,
        "test/artifact",
        "2",
        [(b"{}", "application/vnd.example.thing")],
    )
    assert r
    fails(
        privileged("pull", f"docker://{reg.plain.host}/test/artifact:2"),
        "unsupported type 'application/vnd.example.thing'",
    )
    assert_nothing_installed(privileged)


def _fake_manifest(reg, path: str, body: bytes, ctype: str, digest: str | None = None) -> None:
    headers = {"Content-Type": ctype}
    headers["Docker-Content-Digest"] = digest or "sha256:" + hashlib.sha256(body).hexdigest()
    reg.fake.routes[path] = (200, headers, body)


@pytest.mark.registry
def test_manifest_checks(reg, privileged):
    host = reg.fake.host
    good = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "layers": []}).encode()
    _fake_manifest(
        reg, "/v2/fake/a/manifests/bad-digest", good, oci.OCI_MANIFEST, "sha256:" + "0" * 64
    )
    fails(
        privileged("pull", f"docker://{host}/fake/a:bad-digest"),
        "does not match its digest",
    )
    other = "sha256:" + "1" * 64
    _fake_manifest(reg, f"/v2/fake/a/manifests/{other}", good, oci.OCI_MANIFEST, other)
    fails(privileged("pull", f"docker://{host}/fake/a@{other}"), "does not match its digest")
    v1 = json.dumps({"schemaVersion": 1, "name": "fake/a", "fsLayers": []}).encode()
    _fake_manifest(reg, "/v2/fake/a/manifests/v1", v1, oci.SCHEMA1_TYPES[1])
    fails(privileged("pull", f"docker://{host}/fake/a:v1"), "schema 1")
    _fake_manifest(reg, "/v2/fake/a/manifests/v1json", v1, "application/json")
    fails(privileged("pull", f"docker://{host}/fake/a:v1json"), "schema 1")
    odd = json.dumps({"schemaVersion": 2, "things": []}).encode()
    _fake_manifest(reg, "/v2/fake/a/manifests/odd", odd, "application/vnd.example.odd+json")
    fails(
        privileged("pull", f"docker://{host}/fake/a:odd"),
        "unsupported manifest type 'application/vnd.example.odd+json'",
    )
    # Nested indexes end after a few levels.
    loop = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX}
    body = json.dumps(loop).encode()
    for _ in range(6):
        d = "sha256:" + hashlib.sha256(body).hexdigest()
        _fake_manifest(reg, f"/v2/fake/a/manifests/{d}", body, oci.OCI_INDEX)
        plat = {"architecture": HOST.architecture, "os": "linux"}
        if HOST.variant:
            plat["variant"] = HOST.variant
        loop = dict(loop, manifests=[{"mediaType": oci.OCI_INDEX, "digest": d, "size": len(body),
                                      "platform": plat}])  # fmt: skip
        body = json.dumps(loop).encode()
    _fake_manifest(reg, "/v2/fake/a/manifests/deep", body, oci.OCI_INDEX)
    fails(privileged("pull", f"docker://{host}/fake/a:deep"), "nests image indexes")
    accepts = {h.get("Accept") for _, _, h in reg.fake.requests}
    assert accepts == {oci.ACCEPT}
    for t in (oci.OCI_INDEX, oci.DOCKER_LIST, oci.OCI_MANIFEST, oci.DOCKER_MANIFEST):
        assert t in oci.ACCEPT
    assert_nothing_installed(privileged)


def tree(root: str) -> dict:
    """path -> (type and mode, uid, gid, size, link target or content sha256)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if os.path.islink(p):
                what = os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            else:
                what = None
            size = st.st_size if not os.path.isdir(p) else 0
            out[os.path.relpath(p, root)] = (oct(st.st_mode), st.st_uid, st.st_gid, size, what)
    return out


@pytest.mark.registry
def test_same_tree_as_umoci(reg, privileged, workdir):
    """ruripy's rootfs equals `skopeo copy` + `umoci unpack` of the same image, entry by entry."""
    ref = f"{reg.plain.host}/test/busybox:single"
    r = privileged("pull", f"docker://{ref}", "--quiet")
    assert r.returncode == 0, r.stderr
    layout = os.path.join(workdir, "oracle")
    bundle = os.path.join(workdir, "bundle")
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
         f"oci:{layout}:x"],
        check=True,
    )  # fmt: skip
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:x", bundle], check=True)
    ours, theirs = tree(rootfs_of(privileged, ref)), tree(os.path.join(bundle, "rootfs"))
    assert ours.keys() == theirs.keys()
    assert {k: v for k, v in ours.items() if v != theirs[k]} == {}
    assert len(ours) > 10


@pytest.mark.registry
def test_unchanged_image_is_not_pulled_again(reg, privileged):
    """A second pull of the same reference asks with HEAD only (free on Docker Hub)."""
    ref = f"{reg.plain.host}/test/busybox:latest"
    assert privileged("pull", f"docker://{ref}", "--quiet").returncode == 0
    first = image_json(privileged, ref)
    mark = reg.plain.mark()
    r = privileged("pull", f"docker://{ref}")
    assert r.returncode == 0, r.stderr
    assert "up to date" in r.stderr
    assert reg.plain.since(mark) == [("HEAD", "/v2/test/busybox/manifests/latest", 200, "-")]
    assert image_json(privileged, ref)["created"] == first["created"]
    # Another platform of the same reference is a new pull.
    mark = reg.plain.mark()
    r = privileged("pull", f"docker://{ref}", "--arch", "arm64", "--quiet")
    assert r.returncode == 0, r.stderr
    assert any(m == "GET" for m, *_ in reg.plain.since(mark))
    assert read(f"{rootfs_of(privileged, ref)}/etc/arch") == (
        "host\n" if HOST.architecture == "arm64" else "arm64-v8\n"
    )


@pytest.mark.registry
def test_tls_registry_and_insecure(reg, runner, workdir):
    """Loopback https is found by itself; a self-signed certificate needs --insecure."""
    ref = f"docker://{reg.tls.host}/test/busybox:single"
    fails(runner("pull", ref), "TLS with the registry", "--insecure")
    assert_nothing_installed(runner)
    r = runner("pull", ref, "--insecure", "--quiet")
    assert r.returncode == 0, r.stderr
    assert read(f"{rootfs_of(runner, ref[9:])}/etc/added") == "added\n"
    for p in (reg.tls.cert_path, reg.tls.workdir, reg.root):
        os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
    other = fresh(runner, workdir, "ca")
    r = other("pull", ref, "--quiet", env={"REQUESTS_CA_BUNDLE": reg.tls.cert_path})
    assert r.returncode == 0, r.stderr
    # --insecure also reaches a plain-http registry (https is tried first).
    r = other("pull", f"docker://{reg.plain.host}/test/busybox:single", "--insecure", "--quiet")
    assert r.returncode == 0, r.stderr


@pytest.mark.registry
def test_resume_after_the_connection_drops(reg, runner):
    """Each layer's first download breaks off halfway; the pull resumes it with Range."""
    ref = f"{reg.cutter.host}/test/busybox:single"
    reg.cutter.cut.clear()
    seen = len(reg.cutter.requests)
    r = runner("pull", f"docker://{ref}", "--quiet")
    assert r.returncode == 0, r.stderr
    log = reg.cutter.requests[seen:]
    big = [p for m, p, rng, st in log if "/blobs/" in p and st == 200 and p in reg.cutter.cut]
    assert big, log
    for path in big:
        again = [(rng, st) for m, p, rng, st in log if p == path and rng]
        assert len(again) == 1 and again[0][1] == 206 and again[0][0].startswith("bytes="), log
    assert read(f"{rootfs_of(runner, ref)}/etc/arch") == "host\n"
    assert_cache_consistent(runner)
