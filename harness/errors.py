"""One exception type for bad input: the CLI prints its message as one line and exits non-zero."""


class HarnessError(Exception):
    """A problem the user can fix (bad manifest, missing tool, unreachable registry...)."""
