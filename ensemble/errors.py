"""The one project exception. The CLI turns it into a red message and exit code 1."""


class EnsembleError(Exception):
    """A problem the user can fix: bad input, a missing file, a refused operation.

    The message must say what was wrong and where (file, line, field) and what was expected.
    """
