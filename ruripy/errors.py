"""The one error type ruripy raises for failures a user can cause or fix.

Standard library only: the run/exec fast path imports it.
"""

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


def one_line(message: str) -> str:
    """`message` with control characters escaped: a user's value holding a newline or an
    escape sequence must not break the one-line error or reach the terminal raw. Kept as it
    is with RURIPY_DEBUG=1 (tracebacks from helper processes arrive as messages)."""
    if message.isprintable() or os.environ.get("RURIPY_DEBUG") == "1":
        return message
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
