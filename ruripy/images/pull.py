"""`ruripy pull IMAGE` and `ruripy search`: from a name to an installed image.

IMAGE forms (cli.md): a catalog name with an optional release (`debian`, `debian:12`),
`lxc:DISTRO/RELEASE[/VARIANT]`, `docker://…` (oci.py), `file:PATH` or the path of a
rootfs tarball. LXC and file pulls stream the archive through the extractor while it
downloads (or is read), so a pull is one pass over the network; the archive is cached by
digest, so pulling the same build again downloads nothing. A pull that fills the disk
stops with one error and leaves nothing behind: no staging folder, and nothing it
downloaded into the cache (a resume cannot help while the disk is full).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys

from ..errors import DiskFull, RuripyError, out_of_space
from ..store import Store
from . import catalog, download, lxc
from .install import image_by_name, install_image

TAR_SUFFIXES = (
    ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.zst", ".tar.zstd", ".tzst",
    ".tar.bz2", ".tbz2", ".tbz", ".tar",
)  # fmt: skip
LXC_RE = re.compile(
    r"^lxc:([a-z0-9][a-z0-9._-]*)/([A-Za-z0-9][A-Za-z0-9._-]*)(?:/([a-z0-9][a-z0-9+._-]*))?$"
)


def kind_of(ref: str) -> str:
    """ "oci", "lxc", "file" or "catalog" for an IMAGE argument."""
    if ref.startswith("docker://"):
        return "oci"
    if ref.startswith("lxc:"):
        return "lxc"
    if ref.startswith("file:"):
        return "file"
    if os.path.isfile(ref) or (os.path.exists(ref) and ("/" in ref or ref.endswith(TAR_SUFFIXES))):
        return "file"
    if "/" in ref or ref.endswith(TAR_SUFFIXES):
        if "/" in ref and ":" not in ref.split("/", 1)[0] and not ref.startswith((".", "/")):
            hint = f" For a registry image use docker://{ref}."
        else:
            hint = ""
        raise RuripyError(f"{ref} does not exist: no such file.{hint}")
    return "catalog"


def _file_path(ref: str) -> str:
    return os.path.abspath(ref[len("file:") :] if ref.startswith("file:") else ref)


def file_image_name(path: str) -> str:
    """The image name of a local tarball: its file name without the archive suffixes."""
    base = os.path.basename(path)
    for suf in TAR_SUFFIXES:
        if base.endswith(suf) and len(base) > len(suf):
            base = base[: -len(suf)]
            break
    base = re.sub(r"[^A-Za-z0-9_.:-]", "_", base).strip("._-") or "rootfs"
    return base[:64]


def parse_lxc(ref: str) -> tuple[str, str, str]:
    m = LXC_RE.match(ref)
    if not m:
        raise RuripyError(
            f"invalid image {ref!r}: use lxc:DISTRO/RELEASE[/VARIANT], e.g. lxc:debian/bookworm."
        )
    return m.group(1), m.group(2), m.group(3) or "default"


def lxc_image_name(distro: str, release: str, variant: str) -> str:
    return f"{distro}:{release}" + ("" if variant == "default" else f"/{variant}")


def image_name_for(ref: str) -> str | None:
    """The name a pull of `ref` installs (no network); None if it cannot be known."""
    kind = kind_of(ref)
    if kind == "oci":
        from .oci import parse_reference

        return str(parse_reference(ref))
    if kind == "lxc":
        return lxc_image_name(*parse_lxc(ref))
    if kind == "file":
        return file_image_name(_file_path(ref))
    e, _, release = catalog.resolve(ref)
    return f"{e.name}:{release}"


# -- the pulls --------------------------------------------------------------------------------


def _up_to_date(store: Store, name: str, sha256: str, arch: str | None, quiet: bool):
    found = image_by_name(store, name)
    if found and found[1].get("sha256") == sha256 and found[1].get("arch") == arch:
        if not quiet:
            print(f"{name} is up to date", file=sys.stderr, flush=True)
        info = dict(found[1])
        info["id"] = found[0]
        info["up_to_date"] = True
        return info
    return None


def pull_lxc(
    store: Store,
    distro: str,
    release: str,
    variant: str,
    *,
    name: str,
    arch: str | None = None,
    mirror: str | None = None,
    quiet: bool = False,
    server: lxc.Server | None = None,
    extra: dict | None = None,
) -> dict:
    """Pull one product from an LXC image server as image `name`."""
    arch = lxc.normalize_arch(arch)
    server = server or lxc.Server(mirror)
    build = server.find(distro, release, arch, variant)
    done = _up_to_date(store, name, build.sha256, arch, quiet)
    if done:
        return done
    meta = {
        "kind": "lxc",
        "source": f"lxc:{distro}/{release}/{variant}",
        "url": build.url,
        "mirror": server.base,
        "sha256": build.sha256,
        "digest": "sha256:" + build.sha256,
        "arch": arch,
        "size": build.size,
        "distro": distro,
        "release": release,
        "variant": variant,
        "serial": build.serial,
        "index": build.index,
    }
    meta.update(extra or {})
    blob = store.ensure().blob_path("sha256:" + build.sha256)
    for attempt in (1, 2):
        cached = os.path.exists(blob)
        if cached:
            label, detail = f"Extracting {name}", f"(cached build {build.serial})"
        else:
            label, detail = f"Pulling {name}", f"({arch}, build {build.serial}) from {build.url}"
        bar = download.Bar(label, build.size, quiet, detail)
        stream = download.open_stream(
            build.url, blob, sha256=build.sha256, size=build.size, session=server.session,
            progress=bar, quiet=quiet,
        )  # fmt: skip
        try:
            info = install_image(store, name, meta, [stream], what=f"rootfs.tar.xz of {name}")
        except download.CacheCorrupt:
            if attempt == 1:
                continue  # the cached copy was removed: download it again
            raise
        finally:
            bar.close()
        info["downloaded"] = stream.downloaded
        return info
    raise AssertionError("unreachable")


def _file_chunks(f, meta: dict, bar):
    h = hashlib.sha256()
    done = 0
    while True:
        b = f.read(download.CHUNK)
        if not b:
            break
        h.update(b)
        done += len(b)
        bar(done)
        yield b
    meta["sha256"] = h.hexdigest()
    meta["digest"] = "sha256:" + meta["sha256"]
    meta["size"] = done


def pull_file(
    store: Store, path: str, *, name: str | None = None, arch: str | None = None, quiet=False
) -> dict:
    """Install a local rootfs tarball (any compression) as an image."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise RuripyError(f"{path} does not exist: no such file.") from None
    except IsADirectoryError:
        raise RuripyError(
            f"{path} is a folder, not a tarball; use 'ruripy import NAME {path}' for a folder."
        ) from None
    except OSError as e:
        raise RuripyError(f"cannot read {path}: {e.strerror}.") from None
    with f:
        st = os.fstat(f.fileno())
        if not os.path.isfile(path) or st.st_size == 0:
            what = "empty" if st.st_size == 0 else "not a regular file"
            raise RuripyError(f"{path} is {what}, not a rootfs tarball.")
        name = name or file_image_name(path)
        meta = {
            "kind": "file",
            "source": "file:" + path,
            "url": None,
            "arch": lxc.normalize_arch(arch) if arch else None,
            "size": st.st_size,
            "distro": None,
            "release": None,
        }
        with download.Bar(f"Extracting {name}", st.st_size, quiet, f"from {path}") as bar:
            return install_image(
                store, name, meta, [_file_chunks(f, meta, bar)], what=os.path.basename(path)
            )


def pull(
    ref: str,
    *,
    store: Store | None = None,
    arch: str | None = None,
    mirror: str | None = None,
    insecure: bool = False,
    quiet: bool = False,
) -> dict:
    """Pull IMAGE (any form of cli.md) into the store; return its image.json (+ "id")."""
    store = store or Store()
    try:
        shown = image_name_for(ref)
    except RuripyError:
        shown = ref  # the pull below says what is wrong with it
    try:
        with out_of_space(store.root, f"pulling {shown}"):
            return _pull(ref, store, arch, mirror, insecure, quiet)
    except DiskFull:
        download.discard_downloads()
        raise


def _pull(ref: str, store: Store, arch, mirror, insecure: bool, quiet: bool) -> dict:
    kind = kind_of(ref)
    if kind == "oci":
        from . import oci

        return oci.pull(store.ensure(), ref, arch=arch, insecure=insecure, quiet=quiet)
    if kind == "file":
        return pull_file(store, _file_path(ref), arch=arch, quiet=quiet)
    if kind == "lxc":
        distro, release, variant = parse_lxc(ref)
        return pull_lxc(
            store, distro, release, variant, name=lxc_image_name(distro, release, variant),
            arch=arch, mirror=mirror, quiet=quiet,
        )  # fmt: skip
    e, rel, release = catalog.resolve(ref)
    arch_name = lxc.normalize_arch(arch)
    server = lxc.Server(mirror)
    if rel is None:
        # Not in the catalog: accept it if the server has it, else name close releases.
        try:
            have = [
                p.release
                for p in server.products(arch_name)
                if p.distro == e.lxc_distro and p.variant == e.variant
            ]
        except RuripyError:
            have = []
        if release not in have:
            raise catalog.unknown_release(e, release, also=have)
    server_release = rel.server_name if rel else release
    return pull_lxc(
        store, e.lxc_distro, server_release, e.variant, name=f"{e.name}:{release}",
        arch=arch_name, server=server, quiet=quiet, extra={"catalog": e.name},
    )  # fmt: skip


# -- search -----------------------------------------------------------------------------------


def search(
    term: str | None = None, *, mirror: str | None = None, arch: str | None = None
) -> list[dict]:
    """What the server has for `arch`, filtered by `term`: catalog entries first (name,
    description, default, releases with aliases and build serial), then distros the catalog
    does not know (name `lxc:DISTRO`, pulled as lxc:DISTRO/RELEASE), with "catalog" False."""
    arch = lxc.normalize_arch(arch)
    server = lxc.Server(mirror)
    products = server.products(arch)
    cat = catalog.load()
    t = (term or "").lower()
    rows = []
    for e in cat.values():
        avail = {
            p.release: p for p in products if p.distro == e.lxc_distro and p.variant == e.variant
        }
        if not avail:
            continue
        releases = []
        for r in e.releases:
            if r.server_name in avail:
                p = avail.pop(r.server_name)
                releases.append(
                    {
                        "name": r.name,
                        "aliases": list(r.aliases),
                        "serial": p.serial,
                        "default": r.name == e.default,
                    }
                )
        for rname, p in sorted(avail.items()):
            releases.append({"name": rname, "aliases": [], "serial": p.serial, "default": False})
        rows.append(
            {
                "name": e.name,
                "catalog": True,
                "description": e.description,
                "default": e.default,
                "releases": releases,
                "arch": arch,
            }
        )
    known = {e.lxc_distro for e in cat.values()}
    for distro in sorted({p.distro for p in products if p.distro not in known}):
        rels = sorted({(p.release, p.serial) for p in products if p.distro == distro})
        rows.append(
            {
                "name": f"lxc:{distro}",
                "catalog": False,
                "description": "",
                "default": None,
                "releases": [
                    {"name": r, "aliases": [], "serial": s, "default": False} for r, s in rels
                ],
                "arch": arch,
            }
        )
    if not t:
        return rows
    out = []
    for row in rows:
        words = [row["name"], row["description"]]
        for r in row["releases"]:
            words.append(r["name"])
            words.extend(r["aliases"])
        if t in " ".join(words).lower():
            out.append(row)
    return out
