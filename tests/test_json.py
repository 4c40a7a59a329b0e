"""--json: one JSON document on stdout and nothing else (progress and warnings on stderr),
with exactly the fields docs/json.md documents, as root and as the test user."""

import json
import os
import re
import tarfile

import pytest
from conftest import REPO, busybox_rootfs
from lxcmirror import MirrorServer, build_mirror

from ruripy import options

DOC = os.path.join(REPO, "docs", "json.md")


def documented() -> dict[str, set[str]]:
    """The backticked field names of each '## section' of docs/json.md."""
    with open(DOC) as f:
        text = f.read()
    out = {}
    for part in text.split("\n## ")[1:]:
        title, _, body = part.partition("\n")
        names = set()
        for line in body.splitlines():
            if line.startswith("| `"):
                names |= set(re.findall(r"`([a-z0-9_]+)`", line.split(" | ")[0]))
                if line.startswith("| `stats`"):
                    names |= set(re.findall(r"`([a-z0-9_]+)`", line))
            elif not line.startswith("|"):
                names |= set(re.findall(r"`([a-z0-9_]+)`", line))
        out[title.split()[0]] = names
    return out


DOCUMENTED = documented()


def document(r) -> object:
    """The one JSON document a successful --json command printed."""
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("}\n") or r.stdout.endswith("]\n"), r.stdout[-200:]
    return json.loads(r.stdout)  # raises if anything else is on stdout


def assert_fields(rows: list[dict], section: str) -> None:
    for row in rows:
        extra = set(row) - DOCUMENTED[section]
        assert not extra, f"{section}: fields missing from docs/json.md: {sorted(extra)}"
        for sub in row.values():
            if isinstance(sub, dict) and section == "images":
                assert not set(sub) - DOCUMENTED[section], sorted(set(sub) - DOCUMENTED[section])


@pytest.fixture
def mirror(workdir):
    root = os.path.join(workdir, "mirror")
    build_mirror(root)
    with MirrorServer(root) as server:
        yield server


def test_every_json_command(runner, mirror, workdir):
    env = {"RURIPY_LXC_MIRROR": mirror.url}
    tree = busybox_rootfs(os.path.join(workdir, "tree"))
    tarball = os.path.join(workdir, "bb-1.0.tar")
    with tarfile.open(tarball, "w") as t:
        t.add(tree, arcname=".")
    os.chmod(tarball, 0o644)

    r = runner("pull", "debian:bookworm", "--name", "deb", "--json", env=env)
    pulled = document(r)
    assert "Pulled debian:bookworm" in r.stderr  # progress stays on stderr
    assert (pulled["name"], pulled["kind"], pulled["container"]) == (
        "debian:bookworm",
        "lxc",
        "deb",
    )
    assert_fields([pulled], "images")
    assert document(runner("pull", tarball, "--json"))["kind"] == "file"
    again = document(runner("pull", "debian:bookworm", "--json", env=env))
    assert again["up_to_date"] is True

    images = document(runner("images", "--json"))
    assert [i["name"] for i in images] == ["bb-1.0", "debian:bookworm"]
    assert_fields(images, "images")
    for i in images:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", i["created"])

    listing = document(runner("list", "--json"))
    assert [c["name"] for c in listing] == ["deb"]
    assert listing[0]["status"] == "stopped" and isinstance(listing[0]["created"], int)
    assert_fields(listing, "list")
    assert document(runner("ls", "--json")) == listing

    assert document(runner("ps", "--json")) == []
    r = runner("start", "deb")
    assert r.returncode == 0, r.stderr
    try:
        running = document(runner("ps", "--json"))
        assert [p["name"] for p in running] == ["deb"] and running[0]["pid"] > 1
        assert_fields(running, "ps")
        assert document(runner("list", "--json"))[0]["status"] == "running"
    finally:
        runner("stop", "deb", "--time", "2")

    prof = document(runner("config", "deb", "--json"))
    assert set(prof) == set(options.BY_KEY) == DOCUMENTED["config"] & set(options.BY_KEY)
    assert set(options.BY_KEY) <= DOCUMENTED["config"]
    prof = document(runner("config", "deb", "--set", "hostname=deb", "--json"))
    assert prof["hostname"] == "deb"

    found = document(runner("search", "--json", env=env))
    assert {"debian", "alpine", "ubuntu"} <= {s["name"] for s in found}
    assert_fields(found, "search")
    for s in found:
        for rel in s["releases"]:
            assert set(rel) == {"name", "aliases", "serial", "default"}
    assert document(runner("search", "alpine", "--json", env=env))[0]["name"] == "alpine"

    doc = document(runner("doctor", "--json"))
    assert set(doc) == {"checks", "ok"}
    with open(DOC) as f:
        doctor_doc = f.read().split("\n## doctor")[1]
    named = set(re.findall(r"`([a-z0-9_-]+)`", doctor_doc))
    assert {c["name"] for c in doc["checks"]} <= named


def test_failures_print_no_document(runner):
    for args in (("config", "nosuch", "--json"), ("search", "x", "--json", "--mirror", "ftp://x")):
        r = runner(*args)
        assert r.returncode == 125 and r.stdout == "" and r.stderr.startswith("ruripy: ")
