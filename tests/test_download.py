"""The downloader against real loopback servers: resume, Range-ignoring servers, digests,
errors, the cache and concurrent downloads."""

import hashlib
import os
import socket
import threading

import pytest
from lxcmirror import MirrorServer

from ruripy.errors import RuripyError
from ruripy.images import download

DATA = os.urandom(3 * 1024 * 1024 + 12345)
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(download, "BACKOFF", 0.01)


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "file.bin").write_bytes(DATA)
    return str(root)


@pytest.fixture(params=[True, False], ids=["range", "no-range"])
def server(request, site):
    with MirrorServer(site, ranges=request.param) as s:
        yield s


def test_fetch_writes_file_and_checks_digest(server, tmp_path):
    dest = str(tmp_path / "out")
    assert (
        download.fetch(f"{server.url}/file.bin", dest, sha256=DIGEST, size=len(DATA), quiet=True)
        == dest
    )
    assert open(dest, "rb").read() == DATA
    assert not os.path.exists(dest + ".part")


def test_digest_mismatch_names_file_and_both_digests(server, tmp_path):
    dest = str(tmp_path / "out")
    wrong = "0" * 64
    with pytest.raises(RuripyError) as e:
        download.fetch(f"{server.url}/file.bin", dest, sha256=wrong, size=None, quiet=True)
    msg = str(e.value)
    assert "file.bin" in msg and DIGEST in msg and wrong in msg
    assert os.listdir(tmp_path) == ["site"]


def test_corrupted_file_is_refused_and_deleted(server, tmp_path):
    server.corrupt.add("file.bin")
    dest = str(tmp_path / "out")
    with pytest.raises(RuripyError, match="corrupt"):
        download.fetch(f"{server.url}/file.bin", dest, sha256=DIGEST, size=len(DATA), quiet=True)
    assert not os.path.exists(dest) and not os.path.exists(dest + ".part")


def test_dropped_connection_resumes_with_range(site, tmp_path):
    with MirrorServer(site, ranges=True) as s:
        s.drop_once.add("file.bin")
        dest = str(tmp_path / "out")
        st = download.open_stream(
            f"{s.url}/file.bin", dest, sha256=DIGEST, size=len(DATA), quiet=True
        )
        assert b"".join(st) == DATA
        assert open(dest, "rb").read() == DATA
        gets = s.gets("file.bin")
        assert len(gets) == 2
        ((_, offset),) = s.dropped
        assert "Range" not in gets[0]
        assert gets[1]["Range"] == f"bytes={offset}-"
        assert gets[1]["If-Range"].startswith('"')
        assert st.downloaded == len(DATA)  # only the rest was fetched again


def test_dropped_connection_on_range_ignoring_server_restarts(site, tmp_path):
    with MirrorServer(site, ranges=False) as s:
        s.drop_once.add("file.bin")
        dest = str(tmp_path / "out")
        # The streaming consumer sees every byte once, in order.
        st = download.open_stream(
            f"{s.url}/file.bin", dest, sha256=DIGEST, size=len(DATA), quiet=True
        )
        assert b"".join(st) == DATA
        assert open(dest, "rb").read() == DATA
        assert len(s.gets("file.bin")) == 2


def test_fetch_restarts_cleanly_when_range_is_ignored(site, tmp_path):
    with MirrorServer(site, ranges=False) as s:
        s.drop_once.add("file.bin")
        dest = str(tmp_path / "out")
        download.fetch(f"{s.url}/file.bin", dest, sha256=DIGEST, size=len(DATA), quiet=True)
        assert open(dest, "rb").read() == DATA


def test_part_from_an_interrupted_run_is_resumed(site, tmp_path):
    half = len(DATA) // 2
    dest = str(tmp_path / "out")
    with open(dest + ".part", "wb") as f:
        f.write(DATA[:half])
    with MirrorServer(site, ranges=True) as s:
        st = download.open_stream(
            f"{s.url}/file.bin", dest, sha256=DIGEST, size=len(DATA), quiet=True
        )
        assert b"".join(st) == DATA
        assert [h.get("Range") for h in s.gets("file.bin")] == [f"bytes={half}-"]
        assert st.downloaded == len(DATA) - half


def test_complete_part_is_used_without_a_request(site, tmp_path):
    dest = str(tmp_path / "out")
    with open(dest + ".part", "wb") as f:
        f.write(DATA)
    with MirrorServer(site) as s:
        download.fetch(f"{s.url}/file.bin", dest, sha256=DIGEST, size=len(DATA), quiet=True)
        assert s.gets("file.bin") == []
    assert open(dest, "rb").read() == DATA


def test_garbage_part_fails_once_then_works(site, tmp_path):
    half = len(DATA) // 2
    dest = str(tmp_path / "out")
    with open(dest + ".part", "wb") as f:
        f.write(b"x" * half)
    with MirrorServer(site, ranges=True) as s:
        url = f"{s.url}/file.bin"
        with pytest.raises(RuripyError, match="corrupt"):
            b"".join(download.open_stream(url, dest, sha256=DIGEST, size=len(DATA), quiet=True))
        assert not os.path.exists(dest + ".part")
        download.fetch(url, dest, sha256=DIGEST, size=len(DATA), quiet=True)
    assert open(dest, "rb").read() == DATA


def test_cached_file_is_read_without_network(site, tmp_path):
    dest = str(tmp_path / "out")
    with MirrorServer(site) as s:
        url = f"{s.url}/file.bin"
        download.fetch(url, dest, sha256=DIGEST, size=len(DATA), quiet=True)
        s.clear()
        st = download.open_stream(url, dest, sha256=DIGEST, size=len(DATA), quiet=True)
        assert st.from_cache
        assert b"".join(st) == DATA
        assert s.requests == []


def test_corrupt_cache_is_removed(site, tmp_path):
    dest = str(tmp_path / "out")
    with open(dest, "wb") as f:
        f.write(b"not it")
    with pytest.raises(RuripyError, match="cached copy"):
        b"".join(download.open_stream("http://127.0.0.1:9/x", dest, sha256=DIGEST, size=None))
    assert not os.path.exists(dest)


def test_not_found_is_not_retried(server, tmp_path):
    with pytest.raises(RuripyError) as e:
        download.fetch(
            f"{server.url}/missing.bin", str(tmp_path / "o"), sha256=None, size=None, quiet=True
        )
    assert str(e.value).startswith(
        f"{server.url}/missing.bin was not found on the server (HTTP 404)"
    )
    assert len(server.gets("missing.bin")) == 1
    assert sorted(os.listdir(tmp_path)) == ["site"]


def test_server_error_is_retried_then_reported(server, tmp_path):
    server.status["file.bin"] = 500
    with pytest.raises(
        RuripyError, match=r"answered HTTP 500 for http://127\.0\.0\.1:\d+/file\.bin"
    ):
        download.fetch(
            f"{server.url}/file.bin", str(tmp_path / "o"), sha256=DIGEST, size=None, quiet=True
        )
    assert len(server.gets("file.bin")) == download.ATTEMPTS


def test_connection_refused(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/file.bin"
    with pytest.raises(RuripyError) as e:
        download.fetch(url, str(tmp_path / "o"), sha256=None, size=None, quiet=True)
    assert str(e.value) == (
        f"cannot download {url} (connection refused); check your network and the address, "
        "or pass another --mirror."
    )


def test_concurrent_downloads_share_one_part(site, tmp_path):
    dest = str(tmp_path / "out")
    with MirrorServer(site) as s:
        s.delay = 0.002
        url = f"{s.url}/file.bin"
        errors, results = [], []

        def one():
            try:
                st = download.open_stream(url, dest, sha256=DIGEST, size=len(DATA), quiet=True)
                results.append((b"".join(st) == DATA, st.from_cache))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sorted(results) == [(True, False), (True, True)]
        assert len(s.gets("file.bin")) == 1
    assert open(dest, "rb").read() == DATA


def test_get_bytes_limit_and_missing(server):
    assert download.get_bytes(f"{server.url}/nothing", allow_missing=True) is None
    with pytest.raises(RuripyError, match="larger than"):
        download.get_bytes(f"{server.url}/file.bin", limit=1000)


def test_only_http_urls(tmp_path):
    with pytest.raises(RuripyError, match="only http"):
        download.fetch("file:///etc/passwd", str(tmp_path / "o"), sha256=None, size=None)


def test_fetch_replaces_a_corrupt_cached_copy(site, tmp_path):
    dest = str(tmp_path / "out")
    with open(dest, "wb") as f:
        f.write(b"not it")
    with MirrorServer(site) as s:
        download.fetch(f"{s.url}/file.bin", dest, sha256=DIGEST, size=len(DATA), quiet=True)
        assert len(s.gets("file.bin")) == 1
    assert open(dest, "rb").read() == DATA
