"""The one error type ruripy raises for failures a user can cause or fix.

Standard library only: the run/exec fast path imports it.
"""

import errno
import os

# Exit statuses of the command-line contract (docs: cli.md).
EXIT_FAILURE = 125  # ruripy itself failed
EXIT_CANNOT_RUN = 126  # the command exists but cannot be run
EXIT_NOT_FOUND = 127  # the command does not exist


class RuripyError(Exception):
    """A failure explained to the user in one or two sentences.

    `status` is the exit status the command ends with (125 unless said).
    """

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        message = one_line(message)
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
STORE_HINT = " (e.g. 'ruripy rmi IMAGE', 'ruripy rm NAME')"


class DiskFull(RuripyError):
    """A file system filled up (ENOSPC) or a quota ran out (EDQUOT) while ruripy wrote.

    Without `where` (as it comes out of a helper process) it only names the reason;
    `out_of_space` turns it into the message that says where and during what.
    """

    def __init__(self, err: int, where: str | None = None, doing: str = "", hint: str = ""):
        self.errno = err
        self.where = where
        reason = "disk quota exceeded" if err == errno.EDQUOT else "no space left on device"
        if where is None:
            message = reason + "."
        else:
            message = f"{reason} in {where} while {doing}; free some space{hint} and try again."
        super().__init__(message)


def disk_full(e: BaseException | None) -> bool:
    """Whether `e` says a file system is full (or a quota is used up)."""
    return isinstance(e, DiskFull) or (isinstance(e, OSError) and e.errno in FULL_DISK)


class out_of_space:
    """`with out_of_space(where, doing):` turns a full disk inside (an OSError ENOSPC or
    EDQUOT, or a bare DiskFull from a helper process) into one DiskFull naming `where`
    space ran out and what was being done. The hint names 'ruripy rmi' and 'ruripy rm'
    unless `store` is False (a file outside ruripy's storage)."""

    def __init__(self, where: str, doing: str, store: bool = True) -> None:
        self.where = where
        self.doing = doing
        self.hint = STORE_HINT if store else ""

    def __enter__(self) -> "out_of_space":
        return self

    def __exit__(self, kind, e, tb) -> bool:
        if disk_full(e) and not (isinstance(e, DiskFull) and e.where):
            raise DiskFull(e.errno, self.where, self.doing, self.hint) from None
        return False


def one_line(message: str) -> str:
    """`message` with control characters escaped: a user's value holding a newline or an
    escape sequence must not break the one-line error or reach the terminal raw. Kept as it
    is with RURIPY_DEBUG=1 (tracebacks from helper processes arrive as messages)."""
    if message.isprintable() or os.environ.get("RURIPY_DEBUG") == "1":
        return message
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
