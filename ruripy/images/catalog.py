"""The distro catalog: one TOML file per distro in rootfs-images/ (ruripy/catalog when installed).

A file says where the distro comes from (the LXC product name and variant), its default
release, the known releases with their aliases (debian 12 = bookworm = oldstable) and a
one-line description. `resolve("debian:12")` gives the entry and the release name.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field

from ..errors import RuripyError

_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
RELEASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def catalog_dirs() -> list[str]:
    """Where catalog files live: the package's `catalog` folder, else the repository's."""
    return [os.path.join(_PKG, "catalog"), os.path.join(os.path.dirname(_PKG), "rootfs-images")]


@dataclass
class Release:
    name: str
    aliases: tuple[str, ...] = ()
    lxc_release: str = ""  # the server's name for it, when it differs

    @property
    def server_name(self) -> str:
        return self.lxc_release or self.name


@dataclass
class Entry:
    name: str
    description: str
    default: str
    lxc_distro: str
    variant: str
    releases: list[Release] = field(default_factory=list)
    path: str = ""

    def release(self, wanted: str) -> Release | None:
        """The release called `wanted` or with that alias (case-insensitive)."""
        w = wanted.lower()
        for r in self.releases:
            if r.name.lower() == w:
                return r
        for r in self.releases:
            if w in (a.lower() for a in r.aliases):
                return r
        return None

    def words(self) -> list[str]:
        out = []
        for r in self.releases:
            out.append(r.name)
            out.extend(r.aliases)
        return out


def _bad(path: str, why: str) -> RuripyError:
    return RuripyError(f"catalog file {path} is invalid: {why}; fix or remove it.")


def _load_file(path: str) -> Entry:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise _bad(path, str(e)) from None
    stem = os.path.basename(path)[: -len(".toml")]
    name = doc.get("name", stem)
    if name != stem or not NAME_RE.match(name):
        raise _bad(path, f"'name' must be {stem!r}, the file's name")
    lxc = doc.get("lxc")
    if not isinstance(lxc, dict) or not isinstance(lxc.get("distro"), str):
        raise _bad(path, "it needs an [lxc] table with 'distro'")
    releases = []
    rel_table = doc.get("releases")
    if not isinstance(rel_table, dict) or not rel_table:
        raise _bad(path, "it needs at least one [releases.NAME] table")
    for rname, rdoc in rel_table.items():
        rdoc = rdoc if isinstance(rdoc, dict) else {}
        aliases = rdoc.get("aliases", [])
        if not RELEASE_RE.match(rname) or not isinstance(aliases, list):
            raise _bad(path, f"release {rname!r} is malformed")
        releases.append(
            Release(
                str(rname),
                tuple(str(a) for a in aliases),
                str(rdoc.get("lxc_release", "")),
            )
        )
    entry = Entry(
        name=name,
        description=str(doc.get("description", "")),
        default=str(doc.get("default", releases[0].name)),
        lxc_distro=lxc["distro"],
        variant=str(lxc.get("variant", "default")),
        releases=releases,
        path=path,
    )
    if entry.release(entry.default) is None:
        raise _bad(path, f"the default release {entry.default!r} is not listed")
    return entry


_CACHE: dict[str, Entry] | None = None


def load() -> dict[str, Entry]:
    """Every catalog entry by name (sorted)."""
    global _CACHE
    if _CACHE is not None:
        return _CACHE
    found: dict[str, Entry] = {}
    for d in catalog_dirs():
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for n in names:
            if n.endswith(".toml") and n[:-5] not in found:
                found[n[:-5]] = _load_file(os.path.join(d, n))
        if found:
            break
    if not found:
        raise RuripyError(
            "the distro catalog is missing (no rootfs-images/*.toml next to ruripy); "
            "reinstall ruripy, or use lxc:DISTRO/RELEASE."
        )
    _CACHE = dict(sorted(found.items()))
    return _CACHE


def close_matches(word: str, choices: list[str], n: int = 5) -> list[str]:
    """Choices that contain `word` (rocky -> rockylinux), then similar spellings."""
    by_lower = {c.lower(): c for c in choices}
    w = word.lower()
    hits = [c for c in by_lower if len(w) >= 3 and w in c]
    for h in difflib.get_close_matches(w, list(by_lower), n=n, cutoff=0.6):
        if h not in hits:
            hits.append(h)
    return [by_lower[h] for h in hits[:n]]


def entry(name: str) -> Entry:
    """The catalog entry `name`; RuripyError with close matches when unknown."""
    cat = load()
    e = cat.get(name.lower())
    if e is not None:
        return e
    close = close_matches(name, list(cat))
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise RuripyError(
        f"unknown distro {name!r}.{hint} 'ruripy search' lists the catalog "
        "(or use lxc:DISTRO/RELEASE)."
    )


def unknown_release(e: Entry, release: str, also: list[str] | None = None) -> RuripyError:
    words = e.words() + list(also or [])
    close = close_matches(release, words)
    known = ", ".join(r.name for r in e.releases)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return RuripyError(f"unknown release {release!r} of {e.name}.{hint} Known releases: {known}.")


def split_ref(ref: str) -> tuple[str, str | None]:
    """`debian:12` -> ("debian", "12"); `debian` -> ("debian", None)."""
    name, sep, release = ref.partition(":")
    if not name or (sep and not release):
        raise RuripyError(f"invalid image {ref!r}: use DISTRO or DISTRO:RELEASE, e.g. debian:12.")
    return name, (release if sep else None)


def resolve(ref: str) -> tuple[Entry, Release | None, str]:
    """`debian`, `debian:bookworm`, `debian:12` -> (entry, release or None, release name).

    The release is None (and the name returned as given) when the catalog does not know it;
    the caller may still find it on the server, else report `unknown_release`.
    """
    name, wanted = split_ref(ref)
    e = entry(name)
    if wanted is None:
        r = e.release(e.default)
        assert r is not None
        return e, r, r.name
    if not RELEASE_RE.match(wanted):
        raise RuripyError(f"invalid release {wanted!r} in {ref!r}.")
    r = e.release(wanted)
    return e, r, (r.name if r else wanted)
