"""`ruripy pull docker://…`: references, auth, manifests, platforms, layers, config.

The first part checks the registry-protocol pieces directly (pure functions); the rest
drives the real CLI against Debian's docker-registry on loopback (tests/registry.py).
"""

import base64
import json

import pytest

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
    assert oci.Registry(oci.parse_reference("docker://10.1.1.1:5000/a"), insecure=True).base == (
        "http://10.1.1.1:5000"
    )
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
