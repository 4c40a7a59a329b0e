"""Profile and config files are trusted only when nobody else can change them
(security.md 5.6 and 5.8, checklist P0-N7): the file and every folder above it are owned by
the caller or root and not writable by others, no symlinks, and the run-path cache is used
only when it is ours too.
"""

import marshal
import os
import subprocess

import pytest

from ruripy import options, profile, ruri_config
from ruripy.errors import RuripyError


@pytest.fixture
def cdir(tmp_path):
    d = tmp_path / "box"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def saved(cdir):
    path = str(cdir / "profile.toml")
    profile.save(path, {"hostname": "box"})
    return path


def error_of(fn, *args):
    with pytest.raises(RuripyError) as e:
        fn(*args)
    assert e.value.status == 125
    return str(e.value)


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")


def test_P0_N7_profile_mode_0666_refused(cdir, saved):
    os.chmod(saved, 0o666)
    message = (
        f"{saved} is writable by other users (mode 666); run 'chmod go-w {saved}' if you trust it."
    )
    assert error_of(profile.load, saved) == message
    os.unlink(cdir / "profile.cache")
    assert error_of(profile.load_cached, str(cdir)) == message


def test_P0_N7_group_writable_profile_refused(saved):
    os.chmod(saved, 0o620)
    assert error_of(profile.load, saved) == (
        f"{saved} is writable by other users (mode 620); run 'chmod go-w {saved}' if you trust it."
    )


def test_P0_N7_profile_owned_by_another_uid_refused(cdir, saved):
    needs_root()
    os.chown(saved, 12345, 12345)
    message = f"{saved} is owned by uid 12345, not by you; refusing to use it."
    assert error_of(profile.load, saved) == message
    os.unlink(cdir / "profile.cache")
    assert error_of(profile.load_cached, str(cdir)) == message


def test_P0_N7_root_owned_profile_refused_for_the_unprivileged_user(workdir, src_copy, test_user):
    """As ruripy-test, a profile root owns (in the user's own folder) is not used."""
    d = os.path.join(workdir, "box")
    os.mkdir(d, 0o755)
    os.chown(d, test_user.pw_uid, test_user.pw_gid)
    path = os.path.join(d, "profile.toml")
    with open(path, "w") as f:
        f.write('bind = ["/etc:/host-etc"]\n')
    os.chmod(path, 0o644)
    code = (
        "import sys; from ruripy import profile; from ruripy.errors import RuripyError\n"
        "try:\n    profile.load_cached(sys.argv[1])\nexcept RuripyError as e:\n    print(e)\n"
    )
    run = subprocess.run(
        ["runuser", "-u", test_user.pw_name, "--", "env", "-i", f"PYTHONPATH={src_copy}",
         "PYTHONDONTWRITEBYTECODE=1", "/opt/ruripy-venv/bin/python", "-c", code, d],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.stderr == ""
    assert run.stdout == f"{path} is owned by uid 0, not by you; refusing to use it.\n"


def test_P0_N7_symlinked_profile_refused(cdir, tmp_path):
    real = tmp_path / "elsewhere.toml"
    real.write_text('bind = ["/:/host"]\n')
    os.chmod(real, 0o600)
    link = cdir / "profile.toml"
    os.symlink(real, link)
    assert error_of(profile.load, str(link)) == (
        f"{link} is a symbolic link; refusing to read it. Replace it with the file."
    )
    assert error_of(profile.load_cached, str(cdir)) == (
        f"{link} is a symbolic link; refusing to read it. Replace it with the file."
    )


def test_P0_N7_symlinked_profile_is_refused_even_with_a_fresh_cache(cdir, tmp_path):
    real = tmp_path / "elsewhere.toml"
    real.write_text("")
    os.chmod(real, 0o600)
    profile.save(str(real), {})  # writes profile.cache beside it, in tmp_path
    os.symlink(real, cdir / "profile.toml")
    os.rename(tmp_path / "profile.cache", cdir / "profile.cache")
    with pytest.raises(RuripyError):
        profile.load_cached(str(cdir))


def test_P0_N7_profile_in_world_writable_folder_without_sticky_bit_refused(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o777)
    path = str(d / "profile.toml")
    with open(path, "w") as f:
        f.write("tty = true\n")
    os.chmod(path, 0o600)
    assert error_of(profile.load, path) == (
        f"{d} is writable by other users (mode 777); refusing to read {path} below it. "
        f"Run 'chmod go-w {d}' if you trust it."
    )
    assert error_of(profile.load_cached, str(d)) == (
        f"{d} is writable by other users (mode 777); refusing to read {path} below it. "
        f"Run 'chmod go-w {d}' if you trust it."
    )
    # The same folder with the sticky bit (like /tmp): others cannot replace our files.
    os.chmod(d, 0o1777)
    assert profile.load(path) == dict(options.defaults(), tty=True)


def test_P0_N7_group_writable_parent_refused_above_the_container(tmp_path):
    top = tmp_path / "shared"
    (top / "containers" / "box").mkdir(parents=True)
    os.chmod(top, 0o770)
    cdir = top / "containers" / "box"
    path = str(cdir / "profile.toml")
    with open(path, "w") as f:
        f.write("")
    os.chmod(path, 0o600)
    assert error_of(profile.load_cached, str(cdir)) == (
        f"{top} is writable by other users (mode 770); refusing to read {path} below it. "
        f"Run 'chmod go-w {top}' if you trust it."
    )


def test_P0_N7_parent_owned_by_another_user_refused(tmp_path):
    needs_root()
    d = tmp_path / "theirs"
    (d / "box").mkdir(parents=True)
    os.chown(d, 12345, 12345)
    os.chmod(d, 0o755)
    path = str(d / "box" / "profile.toml")
    with open(path, "w") as f:
        f.write("")
    os.chmod(path, 0o600)
    assert error_of(profile.load, path) == (
        f"{d} is owned by uid 12345, not by you or root; refusing to read {path} below it."
    )


def test_P0_N7_parents_are_checked_through_symlinked_folders(tmp_path):
    open_dir = tmp_path / "open"
    (open_dir / "box").mkdir(parents=True)
    os.chmod(open_dir, 0o777)
    os.symlink(open_dir, tmp_path / "tidy")
    path = str(tmp_path / "tidy" / "box" / "profile.toml")
    assert error_of(profile.load, path) == (
        f"{open_dir} is writable by other users (mode 777); refusing to read {path} below it. "
        f"Run 'chmod go-w {open_dir}' if you trust it."
    )


@pytest.mark.parametrize("mode", [0o666, 0o644])
def test_P0_N7_cache_that_others_may_write_is_ignored(cdir, saved, mode):
    # A cache someone else could have written is never believed: the TOML is read instead.
    cache = cdir / "profile.cache"
    cache.write_bytes(marshal.dumps(dict(options.defaults(), bind=["/:/host"])))
    os.chmod(cache, mode)
    t = os.stat(saved).st_mtime_ns + 10**9
    os.utime(cache, ns=(t, t))
    expected = dict(options.defaults(), hostname="box")
    if mode == 0o644:  # ours and not writable by others: trusted
        expected = dict(options.defaults(), bind=["/:/host"])
    assert profile.load_cached(str(cdir)) == expected


def test_P0_N7_cache_owned_by_another_uid_is_ignored(cdir, saved):
    needs_root()
    cache = cdir / "profile.cache"
    cache.write_bytes(marshal.dumps(dict(options.defaults(), bind=["/:/host"])))
    os.chown(cache, 12345, 12345)
    assert profile.load_cached(str(cdir)) == dict(options.defaults(), hostname="box")
    assert os.stat(cache).st_uid == os.geteuid()  # rewritten as ours


def test_P0_N7_symlinked_cache_is_ignored(cdir, saved, tmp_path):
    other = tmp_path / "planted.cache"
    other.write_bytes(marshal.dumps(dict(options.defaults(), bind=["/:/host"])))
    os.chmod(other, 0o600)
    os.unlink(cdir / "profile.cache")
    os.symlink(other, cdir / "profile.cache")
    assert profile.load_cached(str(cdir)) == dict(options.defaults(), hostname="box")
    assert not os.path.islink(cdir / "profile.cache")


def test_P0_N7_saved_files_are_private(cdir, saved):
    old = os.umask(0)
    try:
        profile.save(saved, {"tty": True})
    finally:
        os.umask(old)
    assert os.stat(saved).st_mode & 0o777 == 0o600
    assert os.stat(cdir / "profile.cache").st_mode & 0o777 == 0o600


def test_P0_N7_ruri_config_others_may_write_refused(tmp_path):
    path = tmp_path / "c.conf"
    path.write_text('user="a"\n')
    os.chmod(path, 0o666)
    assert error_of(ruri_config.to_profile, str(path)) == (
        f"{path} is writable by other users (mode 666); run 'chmod go-w {path}' if you trust it."
    )


def test_P0_N7_ruri_config_owned_by_another_uid_refused(tmp_path):
    needs_root()
    path = tmp_path / "c.conf"
    path.write_text('user="a"\n')
    os.chmod(path, 0o644)
    os.chown(path, 12345, 12345)
    assert error_of(ruri_config.to_profile, str(path)) == (
        f"{path} is owned by uid 12345, not by you or root; refusing to use it."
    )


def test_P0_N7_ruri_config_in_world_writable_folder_refused(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o777)
    path = d / "c.conf"
    path.write_text('user="a"\n')
    os.chmod(path, 0o644)
    assert error_of(ruri_config.to_profile, str(path)) == (
        f"{d} is writable by other users (mode 777); refusing to read {path} below it. "
        f"Run 'chmod go-w {d}' if you trust it."
    )


def test_P0_N7_ruri_config_through_a_symlink_is_checked_where_it_really_is(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o777)
    real = d / "c.conf"
    real.write_text('user="a"\n')
    os.chmod(real, 0o644)
    tidy = tmp_path / "tidy"
    tidy.mkdir()
    os.symlink(real, tidy / "c.conf")
    assert error_of(ruri_config.to_profile, str(tidy / "c.conf")) == (
        f"{d} is writable by other users (mode 777); refusing to read {real} below it. "
        f"Run 'chmod go-w {d}' if you trust it."
    )
