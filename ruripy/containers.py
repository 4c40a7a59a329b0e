"""Containers on disk: create, import, list, remove, rename, clone, export.

A container is containers/NAME/ holding container.rec (what it is made from and how its
root is stored), profile.toml (its saved options) and its root: an overlay (upper/, work/
over the image's read-only rootfs) or a full copy in rootfs/. New containers are made in
a staging folder under tmp/ and renamed into place, so nothing half-made is ever listed.
"""

import os
import stat
import time

from . import lifecycle, options, profile
from .errors import RuripyError
from .sandbox import syscalls
from .sandbox.userns import UsernsCall, run_in_userns
from .store import Store, check_name, read_json, read_record, write_record


def _remove_inside(path: str) -> None:
    """Delete `path` without following symlinks or crossing into another filesystem."""
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return
    if not os.path.isdir(path) or os.path.islink(path):
        os.unlink(path)
        return
    for dirpath, dirnames, filenames, dirfd in os.fwalk(path, topdown=False):
        if os.fstat(dirfd).st_dev != top.st_dev:
            raise RuripyError(f"{dirpath} is a mount point; refusing to delete below it.")
        for n in filenames:
            os.unlink(n, dir_fd=dirfd)
        for n in dirnames:
            try:
                os.rmdir(n, dir_fd=dirfd)
            except NotADirectoryError:
                os.unlink(n, dir_fd=dirfd)
            except PermissionError:
                os.chmod(n, 0o700, dir_fd=dirfd)
                os.rmdir(n, dir_fd=dirfd)
    os.rmdir(path)


def _chmod_dirs_inside(path: str) -> None:
    """Make every folder writable by its owner, so the deletion can enter it (overlay work/)."""
    for _, dirnames, _, dirfd in os.fwalk(path):
        for n in dirnames:
            try:
                st = os.stat(n, dir_fd=dirfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o700 != 0o700:
                    os.chmod(n, 0o700, dir_fd=dirfd)
            except OSError:
                pass


def _remove_tree_inside(path: str) -> None:
    _chmod_dirs_inside(path)
    _remove_inside(path)


def remove_tree(path: str) -> None:
    """Delete a tree whose files may belong to the caller's subordinate ids."""
    if os.path.lexists(path):
        run_in_userns(_remove_tree_inside, path)


def find_image(store: Store, ref: str) -> tuple[str, dict]:
    """(id, image.json) of the pulled image `ref`: its full name, or a unique prefix."""
    images = store.image_names()
    for i, meta in images:
        if meta.get("name") == ref:
            return i, meta
    matches = [
        (i, m)
        for i, m in images
        if str(m.get("name", "")).startswith(ref + ":")
        or str(m.get("name", "")).endswith("/" + ref)
        or str(m.get("name", "")).split("/")[-1] == ref
    ]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(sorted(m["name"] for _, m in matches))
        raise RuripyError(f"image {ref!r} is ambiguous: {names}; give the full name.")
    raise RuripyError(f"no image {ref!r}; pull it first with 'ruripy pull {ref}'.")


def _overlay_probe(lower: str, upper: str, work: str, target: str) -> bool:
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


def _mkdirs_inside(paths: list[str]) -> None:
    for p in paths:
        os.mkdir(p, 0o755)


def _copy_inside(src: str, dst: str, rootless: bool) -> dict:
    from .images.archive import copy_tree

    copy_tree(src, dst, rootless=rootless)
    return {}


def _check_path_chars(path: str) -> None:
    if any(c in path for c in ",:\\\n"):
        raise RuripyError(
            f"the storage path {path} contains ',' ':' or '\\'; set RURIPY_HOME to a plain path."
        )


def _initial_profile(image_config: dict | None, given: dict) -> dict:
    prof = options.defaults()
    cfg = image_config or {}
    base = {}
    if cfg.get("env"):
        base["env"] = [e for e in cfg["env"] if "=" in e]
    for key in ("command", "entrypoint"):
        if cfg.get(key):
            base[key] = list(cfg[key])
    if cfg.get("workdir"):
        base["workdir"] = cfg["workdir"]
    if cfg.get("user"):
        base["user"] = cfg["user"]
    prof = options.merge(prof, {k: options.check_value(k, v) for k, v in base.items()})
    return options.merge(prof, given)


def _finish(store: Store, name: str, staging: str, record: dict, prof: dict) -> None:
    write_record(os.path.join(staging, "container.rec"), record)
    profile.save(os.path.join(staging, profile.PROFILE), prof)
    dest = store.container_dir(name)
    if os.path.lexists(dest):
        raise RuripyError(f"container {name} already exists; pick another name or remove it.")
    os.rename(staging, dest)


def create(name: str, image_ref: str, given: dict) -> dict:
    """Make container `name` from a pulled image: an overlay, or a copy where that fails."""
    check_name(name)
    store = Store().ensure()
    _check_path_chars(store.root)
    image_id, meta = find_image(store, image_ref)
    lower = store.path("images", image_id, "rootfs")
    with store.lock(name):
        if store.container_exists(name):
            raise RuripyError(f"container {name} already exists; pick another name or remove it.")
        prof = _initial_profile(meta.get("config"), given)
        lifecycle.backend_of(prof)
        staging = store.staging_dir(name)
        try:
            dirs = [os.path.join(staging, d) for d in ("rootfs", "upper", "work")]
            run_in_userns(_mkdirs_inside, dirs)
            storage = "overlay"
            if not run_in_userns(_overlay_probe, lower, dirs[1], dirs[2], dirs[0]):
                storage = "copy"
                remove_tree(dirs[1])
                remove_tree(dirs[2])
                remove_tree(dirs[0])
                run_in_userns(_copy_inside, lower, dirs[0], os.geteuid() != 0)
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


def _extract_file_inside(path: str, dst: str, rootless: bool) -> dict:
    from .images.extract import extract

    os.mkdir(dst, 0o755)
    with open(path, "rb") as f:
        stats = extract(f, dst, rootless=rootless)
    return {"skipped_devices": int(stats.get("skipped_devices", 0))}


def import_(name: str, source: str, given: dict) -> dict:
    """Make container `name` from a rootfs folder or tarball (a full copy, no image)."""
    check_name(name)
    store = Store().ensure()
    src = os.path.abspath(source)
    if not os.path.exists(src):
        raise RuripyError(f"{source} does not exist; give a rootfs folder or tarball.")
    prof = options.merge(options.defaults(), given)
    lifecycle.backend_of(prof)
    with store.lock(name):
        if store.container_exists(name):
            raise RuripyError(f"container {name} already exists; pick another name or remove it.")
        staging = store.staging_dir(name)
        rootless = os.geteuid() != 0
        try:
            dst = os.path.join(staging, "rootfs")
            if os.path.isdir(src):
                run_in_userns(_copy_inside, src, dst, rootless)
            else:
                stats = run_in_userns(_extract_file_inside, src, dst, rootless)
                if stats.get("skipped_devices"):
                    os.write(
                        2,
                        f"ruripy: skipped {stats['skipped_devices']} device node(s): a "
                        "rootless container gets /dev from the host.\n".encode(),
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


def remove(name: str, force: bool = False) -> None:
    check_name(name)
    store = Store().ensure()
    store.container_info(name)
    if lifecycle.running(store, name):
        if not force:
            raise RuripyError(
                f"container {name} is running; stop it first ('ruripy stop {name}') or use --force."
            )
        lifecycle.stop(name, 10)
    with store.lock(name):
        src = store.container_dir(name)
        trash = store.staging_dir(f"rm-{name}")
        os.rename(src, os.path.join(trash, "c"))
        remove_tree(trash)
        for f in (store.state_path(name),):
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass


def rename(old: str, new: str) -> None:
    check_name(old)
    check_name(new)
    store = Store().ensure()
    store.container_info(old)
    first, second = sorted((old, new))
    with store.lock(first), store.lock(second):
        if store.container_exists(new):
            raise RuripyError(f"container {new} already exists; pick another name.")
        if lifecycle.running(store, old):
            raise RuripyError(f"container {old} is running; stop it before renaming it.")
        rec = store.container_info(old)
        rec["name"] = new
        write_record(os.path.join(store.container_dir(old), "container.rec"), rec)
        os.rename(store.container_dir(old), store.container_dir(new))


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


def clone(src: str, new: str) -> dict:
    check_name(src)
    check_name(new)
    store = Store().ensure()
    rec = store.container_info(src)
    with store.lock(new):
        if store.container_exists(new):
            raise RuripyError(f"container {new} already exists; pick another name.")
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


def _du_inside(paths: list[str]) -> int:
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
    return total


def listing(store: Store, sizes: bool = True) -> list[dict]:
    running = dict(lifecycle.running_states(store))
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
            "status": "running" if name in running else "stopped",
        }
        try:
            prof = profile.load_cached(cdir)
            item["backend"] = lifecycle.backend_of(prof)
        except RuripyError:
            item["backend"] = "?"
        if sizes:
            try:
                item["size"] = run_in_userns(
                    _du_inside, [os.path.join(cdir, d) for d in ("upper", "rootfs")]
                )
            except RuripyError:
                item["size"] = None
        out.append(item)
    return out


def _export_inside(rootfs: str, out_fd: int, compression: str | None, overlay: tuple | None):
    from .images.archive import export

    if overlay:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        lower, upper = overlay
        # Read-only, upper as the top lower layer: safe while the container runs.
        opts = f"lowerdir={upper}:{lower}"
        if _in_userns():
            opts += ",userxattr"
        syscalls.mount("overlay", rootfs, "overlay", syscalls.MS_RDONLY, opts)
    with os.fdopen(out_fd, "wb", closefd=True) as out:
        export(rootfs, out, compression)
    return {}


def export(name: str, dest: str) -> None:
    """Write container `name`'s root as a tarball (compression by suffix; '-' is stdout)."""
    from .images.archive import compression_for

    store = Store().ensure()
    rec = store.container_info(name)
    cdir = store.container_dir(name)
    compression = None if dest == "-" else compression_for(dest)
    overlay = None
    if rec.get("storage") == "overlay":
        overlay = (store.path("images", rec["image_id"], "rootfs"), os.path.join(cdir, "upper"))
    if dest == "-":
        out_fd = os.dup(1)
        tmp = None
    else:
        tmp = f"{dest}.part{os.getpid()}"
        out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        call = UsernsCall(
            _export_inside,
            os.path.join(cdir, "rootfs"),
            out_fd,
            compression,
            overlay,
            close_in_parent=(out_fd,),
        )
        call.start().wait()
        if tmp:
            os.replace(tmp, dest)
    except BaseException:
        if tmp:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise


__all__ = ["create", "import_", "remove", "rename", "clone", "listing", "export", "read_json"]
