"""Run a Python function as root of a new user namespace that maps the caller's id ranges.

Extraction, copying, export and removal of a rootless rootfs all happen there, so file
owners map into the caller's /etc/subuid range (runtime.md section 5). For root the
function runs in a forked child without a new namespace. Standard library only.
"""

import marshal
import os
import traceback

from ..errors import FULL_DISK, DiskFull, RuripyError
from . import syscalls
from .idmap import IdMap, caller_idmap

_ERR = b"E"
_OK = b"K"
_FULL = b"F"  # a full disk: only its errno goes up; the parent knows where and what


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


class UsernsCall:
    """`fn(*args)` running in a forked child; `wait()` returns its (marshal-able) result.

    Between `start()` and `wait()` the caller may feed the child through pipes it made.
    `close_in_parent` fds are closed in the parent right after the fork. A RuripyError in
    the child is raised again by `wait()`; a full disk (ENOSPC, EDQUOT) as DiskFull.
    """

    def __init__(self, fn, *args, close_in_parent=(), idmap: IdMap | None = None) -> None:
        self.fn = fn
        self.args = args
        self.close_in_parent = close_in_parent
        self.rootless = os.geteuid() != 0
        self.idmap = idmap or (caller_idmap() if self.rootless else None)
        self.pid = -1
        self._result_r = -1

    def start(self) -> "UsernsCall":
        result_r, result_w = os.pipe2(os.O_CLOEXEC)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # child
            code = 125
            try:
                os.close(result_r)
                os.close(ready_r)
                os.close(go_w)
                syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 9)
                if self.rootless:
                    try:
                        syscalls.unshare(syscalls.CLONE_NEWUSER)
                        plain = False
                    except OSError:
                        # No user namespaces (Termux, a locked-down kernel): carry on as
                        # the plain user, as proot-distro does; files keep the caller's id.
                        plain = True
                    os.write(ready_w, b"P" if plain else b"1")
                    if os.read(go_r, 1) != b"1":
                        os._exit(125)
                    if not plain:
                        os.setresgid(0, 0, 0)
                        os.setresuid(0, 0, 0)
                        if self.idmap.ranges:
                            os.setgroups([])
                else:
                    os.write(ready_w, b"1")
                result = self.fn(*self.args)
                os.write(result_w, _OK + marshal.dumps(result))
                code = 0
            except RuripyError as e:
                os.write(result_w, _ERR + str(e).encode())
            except BaseException as e:  # report, never unwind into the parent's code
                msg = f"{type(e).__name__}: {e}"
                if os.environ.get("RURIPY_DEBUG") == "1":
                    msg = traceback.format_exc()
                if isinstance(e, OSError) and e.errno in FULL_DISK:
                    os.write(result_w, _FULL + str(e.errno).encode())
                else:
                    os.write(result_w, _ERR + msg.encode())
            finally:
                os._exit(code)
        for fd in (result_w, ready_w, go_r, *self.close_in_parent):
            os.close(fd)
        self.pid = pid
        self._result_r = result_r
        try:
            state = os.read(ready_r, 1)
            if state == b"P":
                _warn_plain_once()
                os.write(go_w, b"1")
                return self
            if state != b"1":
                self._reap()
                raise RuripyError("could not start a helper process for the user namespace.")
            if self.rootless:
                try:
                    self.idmap.apply(pid)
                except BaseException:
                    os.kill(pid, 9)
                    self._reap()
                    raise
                # Only a rootless child waits for this; root's may be gone already (EPIPE).
                os.write(go_w, b"1")
        finally:
            os.close(ready_r)
            os.close(go_w)
        return self

    def _reap(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        if self._result_r >= 0:
            os.close(self._result_r)
            self._result_r = -1
        return status

    def kill(self) -> None:
        if self.pid > 0:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass

    def wait(self):
        data = _read_all(self._result_r)
        status = self._reap()
        if data[:1] == _OK:
            return marshal.loads(data[1:])
        if data[:1] == _ERR:
            raise RuripyError(data[1:].decode("utf-8", "replace"))
        if data[:1] == _FULL:
            raise DiskFull(int(data[1:]))
        code = os.waitstatus_to_exitcode(status)
        raise RuripyError(f"a helper process in the user namespace ended unexpectedly ({code}).")


_warned = []


def _warn_plain_once() -> None:
    if not _warned:
        _warned.append(True)
        os.write(
            2,
            b"ruripy: warning: user namespaces are unavailable here, so files keep your own id "
            b"and containers run with the proot backend ('ruripy doctor' says why).\n",
        )


def run_in_userns(fn, *args):
    """Run `fn(*args)` as root of the caller's user namespace and return its result."""
    return UsernsCall(fn, *args).start().wait()
