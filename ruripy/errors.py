"""The one error type ruripy raises for failures a user can cause or fix.

Standard library only: the run/exec fast path imports it.
"""

# Exit statuses of the command-line contract (docs: cli.md).
EXIT_FAILURE = 125  # ruripy itself failed
EXIT_CANNOT_RUN = 126  # the command exists but cannot be run
EXIT_NOT_FOUND = 127  # the command does not exist


class RuripyError(Exception):
    """A failure explained to the user in one or two sentences.

    `status` is the exit status the command ends with (125 unless said).
    """

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message
