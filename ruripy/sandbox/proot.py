"""The proot backend: enter a container through the proot binary (ptrace, no namespaces).

For hosts where user namespaces are not available (Android/Termux, locked-down kernels):
`--backend proot`, or `auto` once the rootless path has failed because the kernel refused a
user namespace (a forked child's unshare(CLONE_NEWUSER) confirms it, and the answer is
kept in the store's cache/ for this boot).

What the profile means under proot, where proot can express it:

- the root: `-r ROOTFS` (a copy-storage container; proot cannot mount an overlay, so an
  overlay container is refused with the fix);
- the user: `-0` (fake root) by default, `-i UID:GID` for --user (resolved in the
  container's /etc/passwd and /etc/group, read in-root by ruripy);
- `-w` for the working directory (default: the user's home if it exists, else /);
- `-b` for every --bind, plus /dev, /proc, /sys, /dev/shm (the rootfs's /tmp when the host
  has none) and /etc/resolv.conf with --net host;
- `--link2symlink` when the storage refuses hard links and this proot has it (Termux's),
  `--kill-on-exit` when this proot has it;
- the command, or a login shell (`/bin/bash -l`, else `/bin/sh -l`), with the same clean
  environment as the namespace backends (PATH, HOME, TERM, LANG, USER, --env).

What it cannot honour is listed once on stderr: --net none, --read-only, --cap-add,
--cap-drop, a seccomp profile file or --deny-syscall, --hostname, read-only binds. proot
gives no isolation at all beyond the path translation: no seccomp filter, no masking of
/proc and /sys, no capability bounds (documented in README, "Backends and hosts").

Process tree: P (the CLI: waits, forwards signals) -> proot -> the command. `exec` and a
second `run` start a new proot session in the same root (there are no namespaces to join).
Resource limits still apply: the proot process joins the container's cgroup before it runs.

Standard library only.
"""

import _signal as sig
import os
import stat

from ..errors import RuripyError
from . import inroot, process, syscalls
from .process import SI_USER_CODES, SIGIO, WAITED

_FEATURES = ("--link2symlink", "--kill-on-exit")
STATUS_FD = 3
# proot reports the exit status of the last process that exited normally, and 255 when
# that was none: not the command's. So the container's /bin/sh runs the command and tells
# ruripy its status (128+N for signal N) on fd 3; the command gets neither fd 3 nor 4, and
# its own stderr. `trap :` keeps the shell waiting through signals while the command still
# gets the default actions (caught traps are reset in the subshell); the subshell keeps the
# shell's "Killed" notices off the command's stderr.
WRAPPER = 'exec 4>&2 2>/dev/null; trap : 1 2 3 15; (exec "$@" 2>&4 3>&- 4>&-); echo $? >&3'


def _say(msg: str) -> None:
    try:
        os.write(2, f"ruripy: {msg}\n".encode(errors="replace"))
    except OSError:
        pass


def find_proot() -> str | None:
    """The proot binary: $RURIPY_PROOT, else the first `proot` on PATH or in the usual places."""
    given = os.environ.get("RURIPY_PROOT")
    if given:
        return given if os.access(given, os.X_OK) else None
    dirs = [d for d in (os.environ.get("PATH") or "").split(":") if d.startswith("/")]
    for d in dirs + ["/usr/bin", "/usr/local/bin", "/bin"]:
        p = os.path.join(d, "proot")
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def require_proot() -> str:
    path = find_proot()
    if path is None:
        raise RuripyError(
            "the proot backend needs the proot program; install it ('sudo apt-get install "
            "proot', or 'pkg install proot' on Termux) or set RURIPY_PROOT to its path."
        )
    return path


# -- cached host facts -----------------------------------------------------------------


def _cache_file(cache_dir: str, name: str) -> str:
    return os.path.join(cache_dir, name)


def features(path: str, cache_dir: str | None = None) -> frozenset:
    """The optional flags this proot understands (from `proot --help`, cached per binary)."""
    from ..store import read_record, write_record

    st = os.stat(path)
    key = [os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns]
    cached = _cache_file(cache_dir, "proot.rec") if cache_dir else None
    if cached:
        try:
            rec = read_record(cached)
            if rec.get("key") == key:
                return frozenset(rec.get("features") or ())
        except (OSError, RuripyError):
            pass
    text = _help_text(path)
    found = frozenset(f for f in _FEATURES if f in text)
    if cached:
        try:
            write_record(cached, {"key": key, "features": sorted(found)})
        except OSError:
            pass
    return found


def _help_text(path: str) -> str:
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(w, 1)
            os.dup2(w, 2)
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.execve(path, [path, "--help"], {"PATH": "/usr/bin:/bin"})
        finally:
            os._exit(127)
    os.close(w)
    out = []
    try:
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            out.append(b)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    return b"".join(out).decode("utf-8", "replace")


# -- what the profile means under proot ------------------------------------------------


def unhonoured(cfg: dict) -> list[str]:
    """The options in `cfg` that proot cannot express, as the user would spell them."""
    out = []
    if cfg.get("net") == "none":
        out.append("--net none")
    if cfg.get("read_only"):
        out.append("--read-only")
    if cfg.get("cap_add"):
        out.append("--cap-add " + ",".join(cfg["cap_add"]))
    if cfg.get("cap_drop"):
        out.append("--cap-drop " + ",".join(cfg["cap_drop"]))
    seccomp = cfg.get("seccomp") or "default"
    if seccomp not in ("default", "off"):
        out.append(f"--seccomp {seccomp}")
    if cfg.get("deny_syscall"):
        out.append("--deny-syscall " + ",".join(cfg["deny_syscall"]))
    if cfg.get("hostname"):
        out.append(f"--hostname {cfg['hostname']}")
    ro = [b for b in cfg.get("bind") or () if b.endswith(":ro")]
    if ro:
        out.append("read-only binds (" + ", ".join(ro) + ")")
    return out


def _read_db(rootfd: int, path: str) -> list[list[str]]:
    try:
        fd = inroot.resolve(rootfd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        data = os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)
    return process.parse_db(data)


def resolve_user(rootfd: int, spec: str | None) -> tuple[int, int, str, str]:
    """(uid, gid, home, name) for USER[:GROUP], read in-root from /etc/passwd and /etc/group."""
    uid, gid, _, home, name = process.lookup(
        spec, _read_db(rootfd, "/etc/passwd"), _read_db(rootfd, "/etc/group")
    )
    return uid, gid, home, name


def _kind(rootfd: int, path: str) -> str:
    """One of exec, noexec or missing for `path` inside the root."""
    try:
        fd = inroot.resolve(rootfd, path, os.O_PATH)
    except OSError:
        return "missing"
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
        return "exec"
    return "noexec"


def _isdir(rootfd: int, path: str) -> bool:
    try:
        os.close(inroot.resolve(rootfd, path, os.O_PATH | os.O_DIRECTORY))
        return True
    except OSError:
        return False


def command(rootfd: int, argv: list[str] | None, env: dict, workdir: str) -> list[str]:
    """The command to run, checked in-root: 127 when it does not exist, 126 when it cannot
    be run (RuripyError with that status), as in the namespace backends. A name found on
    PATH comes back as its full path (a shell in between must not pick a builtin)."""
    if not argv:
        for shell in ("/bin/bash", "/bin/sh"):
            if _kind(rootfd, shell) == "exec":
                return [shell, "-l"]
        raise RuripyError("the container has neither /bin/bash nor /bin/sh; give a command to run.")
    name = path = argv[0]
    if "/" in name:
        found = _kind(rootfd, os.path.join(workdir, name))
    else:
        found = "missing"
        for d in (env.get("PATH") or "").split(":"):
            if not d.startswith("/"):
                continue
            k = _kind(rootfd, os.path.join(d, name))
            if k == "exec":
                found, path = k, os.path.join(d, name)
                break
            if k == "noexec" and found == "missing":
                found = k
    if found == "missing" or name.startswith("-"):
        raise RuripyError(f"{name}: command not found in the container.", 127)
    if found == "noexec":
        raise RuripyError(f"{name}: cannot run it: Permission denied.", 126)
    return [path, *argv[1:]]


def _hard_links_work(folder: str) -> bool:
    a = os.path.join(folder, f".ruripy-link-probe.{os.getpid()}")
    b = a + ".2"
    try:
        fd = os.open(a, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        os.link(a, b)
        return True
    except OSError:
        return False
    finally:
        for p in (a, b):
            try:
                os.unlink(p)
            except OSError:
                pass


def build(cfg: dict, argv: list[str] | None, environment) -> tuple[list[str], dict]:
    """(proot argv, environment) for the launch plan `cfg`; `environment(cfg, home, user)`
    makes the clean environment (the namespace backends' own function)."""
    proot = require_proot()
    if cfg.get("lower"):
        raise RuripyError(
            f"container {cfg['name']} uses overlay storage, which the proot backend cannot "
            f"mount; make a copy of it ('ruripy export {cfg['name']} {cfg['name']}.tar', then "
            f"'ruripy import NAME {cfg['name']}.tar') and run that with proot."
        )
    rootfs = cfg["rootfs"]
    try:
        rootfd = inroot.open_root(rootfs)
    except OSError as e:
        raise RuripyError(f"cannot open the root of {cfg['name']}: {e.strerror}.") from None
    try:
        uid, gid, home, user = resolve_user(rootfd, cfg.get("user"))
        env = environment(cfg, home, (cfg.get("user") or "root").partition(":")[0])
        workdir = cfg.get("workdir") or (home if _isdir(rootfd, home) else "/")
        if not _isdir(rootfd, workdir):
            raise RuripyError(f"cannot use working directory {workdir}: No such file or directory.")
        cmd = command(rootfd, argv, env, workdir)
        has_tmp = _isdir(rootfd, "/tmp")
        if _kind(rootfd, "/bin/sh") == "exec":
            cmd = ["/bin/sh", "-c", WRAPPER, "sh", *cmd]
    finally:
        os.close(rootfd)
    feats = features(proot, cfg.get("cache_dir"))
    args = [proot, "-r", rootfs, "-w", workdir, "-v", "-1"]
    args += ["-0"] if uid == 0 and gid == 0 else ["-i", f"{uid}:{gid}"]
    for host in ("/dev", "/proc", "/sys"):
        if os.path.exists(host):
            args += ["-b", host]
    if not os.path.isdir("/dev/shm") and has_tmp:
        args += ["-b", f"{os.path.join(rootfs, 'tmp')}:/dev/shm"]
    if cfg.get("net", "host") == "host" and os.path.isfile("/etc/resolv.conf"):
        args += ["-b", "/etc/resolv.conf"]
    for spec in cfg.get("bind") or ():
        src, dst = spec.split(":")[:2]
        if not os.path.exists(src):
            raise RuripyError(
                f"bind source {src} cannot be used: No such file or directory; check the path."
            )
        args += ["-b", f"{src}:{dst}"]
    if "--link2symlink" in feats and not _hard_links_work(os.path.dirname(rootfs)):
        args.append("--link2symlink")
    if "--kill-on-exit" in feats:
        args.append("--kill-on-exit")
    if cfg.get("qemu"):
        args += ["-q", cfg["qemu"]]
    # proot's own settings from the caller (Termux needs PROOT_TMP_DIR; TMPDIR stands in).
    for k in ("PROOT_TMP_DIR", "PROOT_LOADER", "PROOT_LOADER_32", "PROOT_NO_SECCOMP"):
        if os.environ.get(k):
            env[k] = os.environ[k]
    if "PROOT_TMP_DIR" not in env and os.environ.get("TMPDIR", "").startswith("/"):
        env["PROOT_TMP_DIR"] = os.environ["TMPDIR"]
    return args + cmd, env


# -- running ---------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            pass
    return out


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the proot session's command and what it started)."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 100000:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def tracees(pid: int) -> list[int]:
    """Every process proot `pid` traces: the whole session, orphans included (a process
    whose parent died is reparented away from proot's tree, but proot still traces it)."""
    out = []
    tag = f"TracerPid:\t{pid}\n".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                if tag in f.read(4096):
                    out.append(int(name))
        except OSError:
            pass
    return out


def _end_orphans() -> None:
    """Kill and reap what the ended session left behind with us (its subreaper)."""
    me = os.getpid()
    for _ in range(100):
        left = descendants(me)
        if not left:
            return
        for p in left:
            try:
                os.kill(p, 9)
            except ProcessLookupError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        sig.sigtimedwait((17,), 0.02)


def _signal_all(pid: int, signo: int) -> None:
    for p in set(descendants(pid)) | set(tracees(pid)):
        try:
            os.kill(p, signo)
        except ProcessLookupError:
            pass


def _read_status(fd: int) -> int | None:
    try:
        data = os.read(fd, 64)
    except BlockingIOError:
        return None
    except OSError:
        return -1
    if not data:
        return -1  # EOF: the wrapper is gone without a word
    try:
        return int(data.split()[0])
    except (ValueError, IndexError):
        return -1


def run(cfg: dict, argv: list[str] | None, on_ready, environment, attach=None) -> int:
    """Run one proot session for the launch plan `cfg`; its exit status.

    `on_ready(state)` is called once proot runs (state: pid and start time of the proot
    process, as for the namespace backends); `attach(pid)` puts it in the container's
    cgroups before it execs proot. When the command ends, whatever it left running in the
    session is killed, as when a namespace container's pid 1 ends.
    """
    import fcntl

    args, env = build(cfg, argv, environment)
    bad = unhonoured(cfg)
    if bad:
        _say("warning: the proot backend cannot honour " + ", ".join(bad) + "; running without.")
    master = slave = -1
    if cfg.get("tty"):
        master, slave = os.openpty()
        os.set_inheritable(master, False)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    st_r, st_w = os.pipe2(os.O_CLOEXEC)
    ex_r, ex_w = os.pipe2(os.O_CLOEXEC)  # closed by the child's execve
    waited = (*WAITED, SIGIO)  # the status pipe has data
    sig.pthread_sigmask(sig.SIG_BLOCK, waited)
    # What the session orphans comes to us, not to the host's init: once proot has gone,
    # a process forked in the last moment is neither its child nor its tracee any more.
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            os.close(go_w)
            os.close(st_r)
            os.close(ex_r)
            if not cfg.get("detach"):
                syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 9)
            if os.read(go_r, 1) != b"1":
                os._exit(125)
            if slave >= 0:
                os.close(master)
                os.login_tty(slave)
            elif not os.isatty(0):
                try:
                    os.setsid()  # no way back to the caller's terminal (P1-T1)
                except OSError:
                    pass
            if st_w != STATUS_FD:
                os.dup2(st_w, STATUS_FD)  # inheritable
            else:
                os.set_inheritable(st_w, True)
            if ex_w != STATUS_FD + 1:
                os.dup2(ex_w, STATUS_FD + 1, inheritable=False)
            os.closerange(STATUS_FD + 2, 1 << 16)
            syscalls.reset_signals()
            os.execve(args[0], args, env)
        except OSError as e:
            _say(f"cannot run {args[0]}: {e.strerror}.")
            code = 126 if e.errno == 13 else 127 if e.errno == 2 else 125
        finally:
            os._exit(code)
    os.close(go_r)
    os.close(st_w)
    os.close(ex_w)
    if slave >= 0:
        os.close(slave)
    try:
        fcntl.fcntl(st_r, fcntl.F_SETOWN, os.getpid())
        fcntl.fcntl(st_r, fcntl.F_SETFL, os.O_ASYNC | os.O_NONBLOCK)
        if attach is not None:
            attach(pid)
        os.write(go_w, b"1")
        os.read(ex_r, 1)  # EOF once proot runs (or the child failed and exits)
    except BaseException:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        sig.pthread_sigmask(sig.SIG_UNBLOCK, waited)
        for fd in (master, st_r):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        os.close(go_w)
        os.close(ex_r)
    from .process import boot_id, starttime

    state = {
        "pid": pid,
        "starttime": starttime(pid),
        "boot_id": boot_id(),
        "ns": {},
        "rootless": os.geteuid() != 0,
        "backend": "proot",
        "proot": os.path.realpath(args[0]),
        "net": "host",
        "exec": {},
    }
    on_ready(state)

    def forward(signo: int) -> None:
        if signo == 15:
            _signal_all(pid, 15)  # the whole session, as pid 1 passes SIGTERM to everyone
            return
        # proot -> the wrapper shell -> the command: the signal is for the command.
        target = pid
        for _ in range(2):
            kids = _children(target)
            if not kids:
                break
            target = kids[0]
        try:
            os.kill(target, signo)
        except ProcessLookupError:
            pass

    shared = os.isatty(0)
    reported = None
    try:
        if master >= 0:
            from . import terminal

            code = terminal.relay(master, pid, forward)
            reported = _read_status(st_r)
            return reported if reported is not None and reported >= 0 else code
        while True:
            if reported is None:
                info = sig.sigwaitinfo(waited)
            else:  # the command has ended: keep ending what is left until proot exits
                info = sig.sigtimedwait(waited, 0.02)
                if info is None:
                    _signal_all(pid, 9)
                    continue
            if info.si_signo == 17:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    if reported is None:
                        reported = _read_status(st_r)
                    if reported is not None and reported >= 0:
                        return reported
                    return process.status_code(status)
                continue
            if info.si_signo == SIGIO:
                if reported is None:
                    reported = _read_status(st_r)
                    if reported is not None and reported >= 0:
                        _signal_all(pid, 9)  # the command ended: so does its session
                continue
            if info.si_code in SI_USER_CODES or not shared:
                forward(info.si_signo)
    finally:
        _end_orphans()
        os.close(st_r)  # no more SIGIO; take the ones already pending before unblocking
        while sig.sigtimedwait((SIGIO,), 0) is not None:
            pass
        sig.pthread_sigmask(sig.SIG_UNBLOCK, waited)


def is_session(pid: int, state: dict) -> bool:
    """Whether `pid` is still the proot process the state recorded (not a recycled pid)."""
    try:
        return os.readlink(f"/proc/{pid}/exe") == state.get("proot")
    except OSError:
        return False


def stop(state: dict, pidfd: int, timeout: float) -> None:
    """End a proot session: SIGTERM to its processes (proot itself ignores it), then
    SIGKILL to them and to proot after `timeout` seconds."""
    import select

    pid = state["pid"]
    _signal_all(pid, 15)
    if select.select([pidfd], [], [], timeout)[0]:
        return
    for _ in range(50):
        _signal_all(pid, 9)
        if select.select([pidfd], [], [], 0.1)[0]:
            return
    try:
        sig.pidfd_send_signal(pidfd, 9)
    except ProcessLookupError:
        return
    select.select([pidfd], [], [], 10)
