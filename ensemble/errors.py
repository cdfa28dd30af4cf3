"""The one project exception. The CLI turns it into a red message and exit code 1."""


class EnsembleError(Exception):
    """A problem the user can fix: bad input, a missing file, a refused operation.

    The message must say what was wrong and where (file, line, field) and what was expected.
    """


SHOWN_CHARS = 200   # the longest quoted value an error message shows whole


def shown(value: object) -> str:
    """``repr(value)`` of a value quoted in a message, cut to :data:`SHOWN_CHARS` characters with an
    ellipsis and the full length, so that a 10 MB field never floods the terminal."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text):,} characters)"
