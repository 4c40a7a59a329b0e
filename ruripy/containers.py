"""Containers on disk: create, import, list, remove, rename, clone, export.

A container is containers/NAME/ holding container.rec (what it is made from and how its
root is stored), profile.toml (its saved options) and its root: an overlay (upper/, work/
over the image's read-only rootfs) or a full copy in rootfs/. New containers are made in
a staging folder under tmp/ and renamed into place, so nothing half-made is ever listed;
a full disk removes the staging folder (or export's partial file) and says so in one line.
"""

import os
import sys
import time

from . import lifecycle, options, profile, running
from .errors import RuripyError, out_of_space
from .images.install import remove_here, remove_tree
from .sandbox import syscalls
from .sandbox.userns import UsernsCall, run_in_userns
from .store import Store, check_name, read_json, read_record, write_record


def find_image(store: Store, ref: str) -> tuple[str, dict]:
    """(id, image.json) of the pulled image `ref`, found the way `rmi` finds it."""
    from .images.install import find_image as find

    return find(store, ref)


def _overlay_works(lower: str, upper: str, work: str, target: str) -> bool:
    """Mount the overlay once in a private mount namespace of this (helper) process."""
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if _in_userns():
        opts += ",userxattr"
    try:
        syscalls.mount("overlay", target, "overlay", 0, opts)
    except OSError:
        return False
    syscalls.umount2(target, syscalls.MNT_DETACH)
    return True


def _in_userns() -> bool:
    with open("/proc/self/uid_map") as f:
        return f.read().split() != ["0", "0", "4294967295"]


def _make_root_inside(lower: str, staging: str, overlay: bool, rootless: bool) -> str:
    """In the user namespace: the container's root folders; "overlay" when the kernel
    mounts an overlay over `lower` here, else a full copy of it ("copy")."""
    dirs = [os.path.join(staging, d) for d in ("rootfs", "upper", "work")]
    for d in dirs:
        os.mkdir(d, 0o755)
    try:
        works = overlay and _overlay_works(lower, dirs[1], dirs[2], dirs[0])
    except OSError:  # no mount namespace here (no user namespaces: the proot backend)
        works = False
    if works:
        return "overlay"
    remove_here(dirs)
    _copy_inside(lower, dirs[0], rootless)
    return "copy"


def _copy_inside(src: str, dst: str, rootless: bool) -> dict:
    from .images.archive import copy_tree

    copy_tree(src, dst, rootless=rootless)
    return {}


def _cleanup_stale(store: Store) -> None:
    """Remove staging folders that killed ruripy commands left in tmp/."""
    from .images.install import cleanup_stale

    cleanup_stale(store)


def _warn(message: str) -> None:
    os.write(2, f"ruripy: warning: {message}\n".encode(errors="replace"))


def ruri_profile(path: str) -> dict:
    """The profile a ruri config file (`ruri -D`) describes; warns about what is not kept."""
    from . import ruri_config

    prof, notes = ruri_config.to_profile(path)
    for note in notes:
        _warn(f"{path}: {note}")
    return prof


def _check_path_chars(path: str) -> None:
    if any(c in path for c in ",:\\\n"):
        raise RuripyError(
            f"the storage path {path} contains ',' ':' or '\\'; set RURIPY_HOME to a plain path."
        )


def _initial_profile(image_config: dict | None, given: dict, base: dict | None = None) -> dict:
    """Defaults (or `base`, e.g. from a ruri config), then the image's config, then `given`."""
    prof = dict(base) if base else options.defaults()
    cfg = image_config or {}
    from_image = {}
    if cfg.get("env"):
        from_image["env"] = [e for e in cfg["env"] if "=" in e]
    for key in ("command", "entrypoint"):
        if cfg.get(key):
            from_image[key] = list(cfg[key])
    if cfg.get("workdir"):
        from_image["workdir"] = cfg["workdir"]
    if cfg.get("user"):
        from_image["user"] = cfg["user"]
    prof = options.merge(prof, {k: options.check_value(k, v) for k, v in from_image.items()})
    return options.merge(prof, given)


def _finish(store: Store, name: str, staging: str, record: dict, prof: dict) -> None:
    write_record(os.path.join(staging, "container.rec"), record)
    profile.save(os.path.join(staging, profile.PROFILE), prof)
    dest = store.container_dir(name)
    if os.path.lexists(dest):
        raise RuripyError(f"container {name} already exists; pick another name or remove it.")
    os.rename(staging, dest)


def create(name: str, image_ref: str, given: dict, base: dict | None = None) -> dict:
    """Make container `name` from a pulled image: an overlay, or a copy where that fails.

    `base` is a profile to start from (a ruri config); the image's settings and `given`
    (options on the command line) go on top. RURIPY_TEST_NO_OVERLAY=1 forces the copy.
    """
    check_name(name)
    store = Store().ensure()
    _check_path_chars(store.root)
    image_id, meta = find_image(store, image_ref)
    lower = store.path("images", image_id, "rootfs")
    prof = _initial_profile(meta.get("config"), given, base)
    lifecycle.backend_of(prof)
    _cleanup_stale(store)
    overlay = os.environ.get("RURIPY_TEST_NO_OVERLAY") != "1"
    with out_of_space(store.root, f"creating container {name}"), store.lock(name):
        if store.container_exists(name):
            raise RuripyError(f"container {name} already exists; pick another name or remove it.")
        staging = store.staging_dir(name)
        try:
            storage = run_in_userns(_make_root_inside, lower, staging, overlay, os.geteuid() != 0)
            record = {
                "name": name,
                "image": meta.get("name"),
                "image_id": image_id,
                "storage": storage,
                "created": int(time.time()),
            }
            _finish(store, name, staging, record, prof)
        except BaseException:
            remove_tree(staging)
            raise
    return record


class _Counted:
    """A file object that reports how many bytes went through it to a progress display."""

    def __init__(self, f, bar) -> None:
        self.f = f
        self.bar = bar
        self.done = 0
        self.name = getattr(f, "name", None)

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.done += len(b)
        self.bar(self.done)
        return b

    def write(self, b) -> int:
        n = self.f.write(b)
        self.done += len(b)
        self.bar(self.done)
        return n

    def flush(self) -> None:
        self.f.flush()

    def fileno(self) -> int:
        return self.f.fileno()


def _extract_file_inside(path: str, dst: str, rootless: bool, quiet: bool = False) -> dict:
    from .images.download import Bar
    from .images.extract import extract

    os.mkdir(dst, 0o755)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        with Bar(f"Importing {os.path.basename(path)}", size, quiet) as bar:
            stats = extract(_Counted(f, bar), dst, rootless=rootless, label=path)
    skipped = stats.get("skipped_devices") or 0
    return {"skipped_devices": len(skipped) if isinstance(skipped, list) else int(skipped)}


def import_(
    name: str, source: str, given: dict, base: dict | None = None, quiet: bool = False
) -> dict:
    """Make container `name` from a rootfs folder or tarball (a full copy, no image).

    `base` is a profile to start from (a ruri config); `given` goes on top. A tarball's
    progress shows on stderr unless `quiet`.
    """
    check_name(name)
    if not source.strip():
        raise RuripyError("import needs a SOURCE: the path of a rootfs folder or tarball.")
    store = Store().ensure()
    src = os.path.abspath(source)
    if not os.path.exists(src):
        raise RuripyError(f"{source} does not exist; give a rootfs folder or tarball.")
    real, root = os.path.realpath(src), os.path.realpath(store.root)
    if os.path.isdir(real) and os.path.commonpath([real, root]) in (real, root):
        raise RuripyError(
            f"{source} holds ruripy's own storage ({store.root}) or lies inside it; "
            "give a rootfs folder outside it."
        )
    prof = options.merge(dict(base) if base else options.defaults(), given)
    lifecycle.backend_of(prof)
    _cleanup_stale(store)
    with out_of_space(store.root, f"importing {source} as container {name}"), store.lock(name):
        if store.container_exists(name):
            raise RuripyError(f"container {name} already exists; pick another name or remove it.")
        staging = store.staging_dir(name)
        rootless = os.geteuid() != 0
        try:
            dst = os.path.join(staging, "rootfs")
            if os.path.isdir(src):
                run_in_userns(_copy_inside, src, dst, rootless)
            else:
                stats = run_in_userns(_extract_file_inside, src, dst, rootless, quiet)
                n = stats.get("skipped_devices")
                if n and rootless:
                    _warn(
                        f"skipped {n} device node{'s' if n != 1 else ''} in {source} (a "
                        "rootless container gets /dev from ruripy at run time)."
                    )
            record = {
                "name": name,
                "image": None,
                "image_id": None,
                "storage": "copy",
                "source": src,
                "created": int(time.time()),
            }
            _finish(store, name, staging, record, prof)
        except BaseException:
            remove_tree(staging)
            raise
    return record


def _refuse_running(store: Store, name: str, what: str, force_does: str) -> None:
    found = running.find(store, name, locked=True)
    if found:
        os.close(found[1])
        raise RuripyError(
            f"container {name} is running; stop it before {what} it ('ruripy stop {name}') "
            f"or use --force to {force_does}."
        )


def remove(name: str, force: bool = False) -> None:
    """Delete container `name`; a running one only with `force`, which stops it first."""
    check_name(name)
    store = Store().ensure()
    store.container_info(name)
    _cleanup_stale(store)
    with store.lock(name):
        store.container_info(name)
        if force:
            lifecycle.stop_locked(store, name, 10)
        else:
            _refuse_running(store, name, "removing", "stop and remove it")
        trash = store.staging_dir(f"rm-{name}")
        os.rename(store.container_dir(name), os.path.join(trash, "c"))
        try:
            os.unlink(store.state_path(name))
        except FileNotFoundError:
            pass
    remove_tree(trash)


def _two_locks(store: Store, a: str, b: str):
    """Both containers' locks, always taken in name order (no deadlock)."""
    import contextlib

    stack = contextlib.ExitStack()
    for n in sorted({a, b}):
        stack.enter_context(store.lock(n))
    return stack


def rename(old: str, new: str, force: bool = False) -> None:
    """Rename a container; a running one only with `force` (its state moves along)."""
    check_name(old)
    check_name(new)
    store = Store().ensure()
    store.container_info(old)
    if old == new:
        raise RuripyError(f"container {old} already has that name.")
    with _two_locks(store, old, new):
        rec = store.container_info(old)
        if store.container_exists(new) or os.path.lexists(store.container_dir(new)):
            raise RuripyError(f"container {new} already exists; pick another name.")
        found = running.find(store, new, locked=True)  # clean a stale state of `new`
        if found:
            os.close(found[1])
            raise RuripyError(f"a container named {new} is running; pick another name.")
        if not force:
            _refuse_running(store, old, "renaming", "rename it while it runs")
        os.rename(store.container_dir(old), store.container_dir(new))
        if os.path.lexists(store.state_path(old)):
            os.rename(store.state_path(old), store.state_path(new))
        rec["name"] = new
        write_record(os.path.join(store.container_dir(new), "container.rec"), rec)


def _clone_inside(src_dir: str, dst_dir: str, storage: str, rootless: bool) -> dict:
    """An overlay clone copies only the upper layer; a copy clone copies the whole root."""
    from .images.archive import copy_tree

    if storage == "overlay":
        copy_tree(os.path.join(src_dir, "upper"), os.path.join(dst_dir, "upper"), rootless=rootless)
        os.mkdir(os.path.join(dst_dir, "work"), 0o755)
        os.mkdir(os.path.join(dst_dir, "rootfs"), 0o755)
    else:
        copy_tree(
            os.path.join(src_dir, "rootfs"), os.path.join(dst_dir, "rootfs"), rootless=rootless
        )
    return {}


def clone(src: str, new: str, force: bool = False) -> dict:
    """Copy container `src` as `new` (with overlay only upper/ is copied); a running source
    only with `force` (its files are copied as they are at that moment)."""
    check_name(src)
    check_name(new)
    store = Store().ensure()
    store.container_info(src)
    if src == new:
        raise RuripyError(f"container {new} already exists; pick another name.")
    _cleanup_stale(store)
    with out_of_space(store.root, f"cloning container {src} as {new}"), _two_locks(store, src, new):
        rec = store.container_info(src)
        if store.container_exists(new):
            raise RuripyError(f"container {new} already exists; pick another name.")
        if not force:
            _refuse_running(store, src, "cloning", "copy it while it runs")
        prof = profile.load_cached(store.container_dir(src))
        staging = store.staging_dir(new)
        try:
            run_in_userns(
                _clone_inside, store.container_dir(src), staging, rec["storage"], os.geteuid() != 0
            )
            new_rec = dict(rec, name=new, created=int(time.time()), cloned_from=src)
            _finish(store, new, staging, new_rec, prof)
        except BaseException:
            remove_tree(staging)
            raise
    return new_rec


def _du_inside(trees: dict) -> dict:
    """{name: bytes on disk} for {name: [folders]}; hard links are counted once per name."""
    out = {}
    for name, paths in trees.items():
        total = 0
        seen = set()
        for p in paths:
            if not os.path.isdir(p):
                continue
            for _, dirnames, filenames, dirfd in os.fwalk(p):
                for n in filenames + dirnames:
                    try:
                        st = os.stat(n, dir_fd=dirfd, follow_symlinks=False)
                    except OSError:
                        continue
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
        out[name] = total
    return out


def listing(store: Store, sizes: bool = True) -> list[dict]:
    """Every container: name, image, backend, storage, created, status and size on disk
    (the copy-on-write layer of an overlay container, the whole root of a copy). Like
    every look at the store, it cleans what killed commands left (stale state, tmp/)."""
    up = dict(running.all_states(store))
    _cleanup_stale(store)
    out = []
    for name in store.container_names():
        try:
            rec = read_record(os.path.join(store.container_dir(name), "container.rec"))
        except (OSError, RuripyError):
            continue
        cdir = store.container_dir(name)
        item = {
            "name": name,
            "image": rec.get("image"),
            "storage": rec.get("storage"),
            "created": rec.get("created"),
            "status": "running" if name in up else "stopped",
        }
        try:
            prof = profile.load_cached(cdir)
            item["backend"] = lifecycle.backend_of(prof)
        except RuripyError:
            item["backend"] = "?"
        out.append(item)
    if sizes and out:
        trees = {
            i["name"]: [
                os.path.join(store.container_dir(i["name"]), d) for d in ("upper", "rootfs")
            ]
            for i in out
        }
        try:
            found = run_in_userns(_du_inside, trees)
        except RuripyError:
            found = {}
        for i in out:
            i["size"] = found.get(i["name"])
    return out


def _export_inside(
    rootfs: str, out_fd: int, compression: str | None, overlay: tuple | None, label: str, quiet
):
    from .images.archive import export
    from .images.download import Bar

    if overlay:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        lower, upper = overlay
        # Read-only, upper as the top lower layer: safe while the container runs.
        opts = f"lowerdir={upper}:{lower}"
        if _in_userns():
            opts += ",userxattr"
        syscalls.mount("overlay", rootfs, "overlay", syscalls.MS_RDONLY, opts)
    # The size is not known ahead: a bar of bytes and speed on a terminal, else one line.
    bar_shown = not quiet and sys.stderr.isatty()
    if not quiet and not bar_shown:
        print(label, file=sys.stderr, flush=True)
    with os.fdopen(out_fd, "wb", closefd=True) as out, Bar(label, None, not bar_shown) as bar:
        counted = _Counted(out, bar)
        stats = export(rootfs, counted, compression)
    return {"entries": stats.get("entries"), "written": counted.done}


def _folder_of(dest: str) -> str:
    """The folder an export writes into, to name when its disk is full."""
    if dest == "-":
        try:
            dest = os.readlink("/proc/self/fd/1")
        except OSError:
            return "standard output"
        if not dest.startswith("/"):  # a pipe or a socket
            return "standard output"
    return os.path.dirname(os.path.abspath(dest))


def export(name: str, dest: str, quiet: bool = False) -> None:
    """Write container `name`'s root as a tarball (compression by suffix; '-' is stdout).
    Progress shows on stderr unless `quiet`."""
    from .images.archive import compression_for

    store = Store().ensure()
    rec = store.container_info(name)
    cdir = store.container_dir(name)
    compression = None if dest == "-" else compression_for(dest)
    overlay = None
    if rec.get("storage") == "overlay":
        overlay = (store.path("images", rec["image_id"], "rootfs"), os.path.join(cdir, "upper"))
    doing = f"exporting container {name}" + ("" if dest == "-" else f" to {dest}")
    full = out_of_space(_folder_of(dest), doing, store=False)
    if dest == "-":
        out_fd = os.dup(1)
        tmp = None
    else:
        tmp = f"{dest}.part{os.getpid()}"
        with full:
            out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        call = UsernsCall(
            _export_inside,
            os.path.join(cdir, "rootfs"),
            out_fd,
            compression,
            overlay,
            f"Exporting {name}" + ("" if dest == "-" else f" to {dest}"),
            quiet,
            close_in_parent=(out_fd,),
        )
        with full:
            done = call.start().wait()
        if tmp:
            os.replace(tmp, dest)
        if not quiet:
            from .images.download import human_size

            sys.stderr.write(
                f"Exported {name}: {done.get('entries')} entries, "
                f"{human_size(done.get('written'))}\n"
            )
    except BaseException:
        if tmp:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise


__all__ = ["create", "import_", "remove", "rename", "clone", "listing", "export", "read_json"]
