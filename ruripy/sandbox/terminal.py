"""`--tty`: a new pseudo-terminal from the container's own devpts, relayed to the caller.

The command's process opens /dev/ptmx inside the container, hands the master to the
caller over a socket pair, and makes the slave its controlling terminal. The caller puts
its own terminal in raw mode, copies bytes both ways and passes window-size changes on
(runtime.md 6.2). Standard library only. This module is loaded only when --tty is asked,
on the host side, with everything it uses: the relay may run after its process joined a
container, where nothing can be imported (process.seal_imports).
"""

import fcntl
import os
import select
import signal
import socket
import struct
import termios
import tty

TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430


def open_pty(owner_uid: int, tty_gid: int | None) -> tuple[int, int, str]:
    """(master, slave, slave's path) from the container's /dev/ptmx; the slave belongs to
    `owner_uid`."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
    path = f"/dev/pts/{n}"
    slave = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.fchown(slave, owner_uid, -1 if tty_gid is None else tty_gid)
    except OSError:  # the tty group is not mapped (single-id map)
        os.fchown(slave, owner_uid, -1)
    os.fchmod(slave, 0o620)
    return master, slave, path


def send_master(sock_fd: int, master: int) -> None:
    s = socket.socket(fileno=sock_fd)
    try:
        socket.send_fds(s, [b"M"], [master])
    finally:
        s.detach()


def receive_master(sock) -> int | None:
    """The master fd sent by the command's process, or None when it died first."""
    try:
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    except OSError:
        return None
    return fds[0] if fds else None


def _copy_winsize(master: int) -> None:
    try:
        ws = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, ws)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def relay(master: int, child: int, forward) -> int:
    """Copy stdin -> master and master -> stdout until the command ends; its exit status."""
    interactive = os.isatty(0)
    saved = termios.tcgetattr(0) if interactive else None
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    pending: list[int] = []
    old_wakeup = signal.set_wakeup_fd(wake_w)
    old = {}
    for s in (signal.SIGWINCH, signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        old[s] = signal.signal(s, lambda signo, frame: pending.append(signo))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, list(old))
    try:
        if interactive:
            tty.setraw(0)
            _copy_winsize(master)
        stdin_open = True
        while True:
            fds = [master, wake_r] + ([0] if stdin_open else [])
            try:
                ready = select.select(fds, [], [])[0]
            except InterruptedError:
                ready = []
            if wake_r in ready:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
            while pending:
                s = pending.pop()
                if s == signal.SIGWINCH and interactive:
                    _copy_winsize(master)
                elif s in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                    forward(s)
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every holder of the slave has gone
                    data = b""
                if not data:
                    break
                _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    stdin_open = False
                    _write_all(master, b"\x04")
                else:
                    _write_all(master, data)
        _, status = os.waitpid(child, 0)
        return os.waitstatus_to_exitcode(status) if status & 0x7F == 0 else 128 + (status & 0x7F)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)
        signal.set_wakeup_fd(old_wakeup)
        for s, h in old.items():
            signal.signal(s, h)
        os.close(wake_r)
        os.close(wake_w)
        os.close(master)
