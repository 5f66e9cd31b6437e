"""The one exception type users see.

A `LiftError` is a problem with the user's input or environment (a missing column, a model that
cannot be found offline, ...). Its message is one line that names the problem *and* the fix; the
CLI prints it without a traceback. Anything else that escapes is a bug in liftkit and keeps its
traceback.
"""


class LiftError(Exception):
    """A user-facing error: one line, says what is wrong and what to do about it."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none): what a one-line
    error quotes of a library's multi-line explanation."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
