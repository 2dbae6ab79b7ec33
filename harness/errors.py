"""One exception type for bad input: the CLI prints its message as one line and exits non-zero."""


class HarnessError(Exception):
    """A problem the user can fix (bad manifest, missing tool, unreachable registry...)."""


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C (jobs in flight are cancelled on the way out), and
    is no Exception, so that no `except Exception` on the way swallows it."""
