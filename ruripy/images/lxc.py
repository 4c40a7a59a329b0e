"""Client for LXC image servers (images.linuxcontainers.org and its mirrors).

Simplestreams first (`streams/v1/index.json` -> `images.json`: per-file sha256 and size),
falling back to the CSV index `meta/1.0/index-system` plus the build's `SHA256SUMS`.
File locations always come from the server (the item `path` or the CSV's sixth field),
never from the product name. See docs images.md section 2.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from ..errors import RuripyError
from .download import get_bytes, new_session

DEFAULT_MIRROR = "https://images.linuxcontainers.org"
MIRROR_ENV = "RURIPY_LXC_MIRROR"

# os.uname().machine -> the LXC/Debian architecture name (images.md 2.7)
ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "armhf",
    "armv8l": "armhf",
    "armhf": "armhf",
    "armv6l": "armel",
    "armel": "armel",
    "i686": "i386",
    "i586": "i386",
    "i386": "i386",
    "riscv64": "riscv64",
    "ppc64le": "ppc64el",
    "ppc64el": "ppc64el",
    "s390x": "s390x",
    "loongarch64": "loong64",
    "loong64": "loong64",
}


def host_arch() -> str:
    """The LXC architecture name of this machine."""
    machine = os.uname().machine
    return ARCHES.get(machine, machine)


def normalize_arch(arch: str | None) -> str:
    """The LXC name for `--arch` (accepts kernel names such as aarch64); the host's if None."""
    if not arch:
        return host_arch()
    a = arch.strip().lower()
    if a in ARCHES:
        return ARCHES[a]
    known = sorted(set(ARCHES.values()))
    raise RuripyError(f"unknown architecture {arch!r}; use one of: {', '.join(known)}.")


def base_url(mirror: str | None = None) -> str:
    """The server's base URL: --mirror, else $RURIPY_LXC_MIRROR, else the official server."""
    if mirror is not None and not mirror.strip():  # --mirror "" is a mistake, not "default"
        raise RuripyError("--mirror needs a URL: the http:// or https:// folder of the server.")
    url = (mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR).strip()
    if not re.match(r"^https?://[^/\s]+", url):
        raise RuripyError(
            f"invalid mirror URL {url!r}: give the http:// or https:// folder that holds "
            "meta/, streams/ and images/."
        )
    return url.rstrip("/")


def join(base: str, path: str) -> str:
    """A server path (relative, or absolute under the base) as a URL below `base`."""
    if "://" in path or "\\" in path or any(p == ".." for p in path.split("/")):
        raise RuripyError(f"the image server listed a suspicious path {path!r}; refusing it.")
    return base.rstrip("/") + "/" + path.lstrip("/")


@dataclass
class Build:
    """One rootfs build on the server."""

    distro: str
    release: str
    arch: str
    variant: str
    serial: str
    url: str
    sha256: str
    size: int | None
    index: str  # "simplestreams" or "csv"

    @property
    def product(self) -> str:
        return f"{self.distro}:{self.release}:{self.arch}:{self.variant}"


@dataclass
class Product:
    """A (distro, release, arch, variant) the server lists, with its newest serial."""

    distro: str
    release: str
    arch: str
    variant: str
    serial: str
    aliases: tuple[str, ...] = ()
    release_title: str = ""


def _serial_key(serial: str) -> tuple[bool, str]:
    return (bool(re.match(r"^\d{8}", serial)), serial)


class Server:
    """One LXC image server; reads each index at most once."""

    def __init__(self, mirror: str | None = None, session=None) -> None:
        self.base = base_url(mirror)
        self.session = session or new_session()
        self._streams: dict | None = None
        self._streams_tried = False
        self._csv: list[list[str]] | None = None

    # -- simplestreams --------------------------------------------------------------------
    def streams(self) -> dict | None:
        """The products of the simplestreams catalog, or None if the server has none."""
        if self._streams_tried:
            return self._streams
        self._streams_tried = True
        index_url = join(self.base, "streams/v1/index.json")
        try:
            raw = get_bytes(index_url, session=self.session, allow_missing=True)
        except RuripyError as e:
            if "HTTP" in str(e):  # an error answer: try the CSV index instead
                return None
            raise
        if raw is None:
            return None
        try:
            index = json.loads(raw)
            paths = [
                e["path"]
                for e in index.get("index", {}).values()
                if isinstance(e, dict)
                and e.get("datatype") == "image-downloads"
                and e.get("products")
                and isinstance(e.get("path"), str)
            ]
        except (ValueError, AttributeError, KeyError, TypeError):
            return None
        products: dict = {}
        for p in paths:
            raw = get_bytes(join(self.base, p), session=self.session, allow_missing=True)
            if raw is None:
                continue
            try:
                doc = json.loads(raw)
                found = doc.get("products", {})
            except (ValueError, AttributeError):
                raise RuripyError(
                    f"{join(self.base, p)} is not a valid simplestreams catalog; "
                    "pass another --mirror."
                ) from None
            if isinstance(found, dict):
                products.update(found)
        self._streams = products
        return products

    # -- CSV index --------------------------------------------------------------------------
    def csv(self) -> list[list[str]]:
        """The lines of meta/1.0/index-system, each split into its 6 fields."""
        if self._csv is not None:
            return self._csv
        url = join(self.base, "meta/1.0/index-system")
        raw = get_bytes(url, session=self.session, allow_missing=True)
        if raw is None:
            raise RuripyError(
                f"{self.base} is not an LXC image server: neither streams/v1/index.json nor "
                "meta/1.0/index-system was found; check --mirror or $RURIPY_LXC_MIRROR."
            )
        rows = []
        for line in raw.decode("utf-8", "replace").splitlines():
            fields = line.strip().split(";")
            if len(fields) == 6 and all(fields[:5]):
                rows.append(fields)
        self._csv = rows
        return rows

    # -- queries ------------------------------------------------------------------------------
    def products(self, arch: str | None = None) -> list[Product]:
        """Every product the server lists (for `arch` if given)."""
        out = []
        streams = self.streams()
        if streams:
            for key, prod in streams.items():
                parts = key.split(":")
                if len(parts) != 4 or not isinstance(prod, dict):
                    continue
                if arch and parts[2] != arch:
                    continue
                versions = prod.get("versions") or {}
                if not isinstance(versions, dict):
                    continue
                serials = [s for s, v in versions.items() if isinstance(v, dict) and _root_item(v)]
                if not serials:
                    continue
                aliases = prod.get("aliases") or ""
                out.append(
                    Product(
                        *parts,
                        serial=max(serials, key=_serial_key),
                        aliases=tuple(a for a in str(aliases).split(",") if a),
                        release_title=str(prod.get("release_title") or ""),
                    )
                )
            return out
        for f in self.csv():
            if arch and f[2] != arch:
                continue
            out.append(Product(f[0], f[1], f[2], f[3], f[4]))
        return out

    def find(self, distro: str, release: str, arch: str, variant: str = "default") -> Build:
        """The newest rootfs.tar.xz build of a product; RuripyError naming close ones if none."""
        streams = self.streams()
        if streams:
            prod = streams.get(f"{distro}:{release}:{arch}:{variant}")
            if isinstance(prod, dict):
                versions = prod.get("versions") or {}
                best = None
                for serial in sorted(versions, key=_serial_key, reverse=True):
                    item = (
                        _root_item(versions[serial]) if isinstance(versions[serial], dict) else None
                    )
                    if item:
                        best = (serial, item)
                        break
                if best is None:
                    raise RuripyError(
                        f"{distro} {release} ({arch}, {variant}) has no rootfs.tar.xz on "
                        f"{self.base} (only other formats); pick another release or variant."
                    )
                serial, item = best
                sha = str(item.get("sha256") or "").lower()
                if not re.fullmatch(r"[0-9a-f]{64}", sha):
                    raise RuripyError(
                        f"the image server lists no valid sha256 for {distro} {release}; "
                        "pass another --mirror."
                    )
                size = item.get("size")
                return Build(
                    distro,
                    release,
                    arch,
                    variant,
                    serial,
                    url=join(self.base, str(item["path"])),
                    sha256=sha,
                    size=int(size) if isinstance(size, int) and size >= 0 else None,
                    index="simplestreams",
                )
            raise self._not_found(distro, release, arch, variant)
        for f in self.csv():
            if f[:4] == [distro, release, arch, variant]:
                return self._csv_build(f)
        raise self._not_found(distro, release, arch, variant)

    def _csv_build(self, f: list[str]) -> Build:
        folder = f[5] if f[5].endswith("/") else f[5] + "/"
        sums_url = join(self.base, folder + "SHA256SUMS")
        raw = get_bytes(sums_url, session=self.session, limit=1 << 20)
        sha = None
        for line in raw.decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*").removeprefix("./") == "rootfs.tar.xz":
                sha = parts[0].lower()
        if not sha or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise RuripyError(
                f"{sums_url} lists no sha256 for rootfs.tar.xz; pass another --mirror."
            )
        return Build(
            f[0],
            f[1],
            f[2],
            f[3],
            f[4],
            url=join(self.base, folder + "rootfs.tar.xz"),
            sha256=sha,
            size=None,
            index="csv",
        )

    def _not_found(self, distro: str, release: str, arch: str, variant: str) -> RuripyError:
        import difflib

        prods = self.products()
        same_distro = [p for p in prods if p.distro == distro]
        if not same_distro:
            names = sorted({p.distro for p in prods})
            close = difflib.get_close_matches(distro, names, n=5, cutoff=0.5)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            return RuripyError(
                f"the image server {self.base} has no distro {distro!r}.{hint} "
                "'ruripy search' lists what it has."
            )
        releases = sorted({p.release for p in same_distro if p.arch == arch})
        if release not in releases:
            close = difflib.get_close_matches(release, releases, n=5, cutoff=0.3) or releases[:8]
            where = f"for {arch}" if releases else f"for {arch} (it has none for that arch)"
            return RuripyError(
                f"{distro} has no release {release!r} {where} on {self.base}; "
                f"available: {', '.join(close) or 'none'}."
            )
        variants = sorted(
            {p.variant for p in same_distro if p.arch == arch and p.release == release}
        )
        return RuripyError(
            f"{distro} {release} ({arch}) has no variant {variant!r} on {self.base}; "
            f"available: {', '.join(variants)}."
        )


def _root_item(version: dict) -> dict | None:
    """The item of a version whose ftype is root.tar.xz (never chosen by item key)."""
    items = version.get("items")
    if not isinstance(items, dict):
        return None
    for item in items.values():
        if (
            isinstance(item, dict)
            and item.get("ftype") == "root.tar.xz"
            and isinstance(item.get("path"), str)
        ):
            return item
    return None
