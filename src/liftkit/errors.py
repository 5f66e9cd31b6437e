"""The one exception type users see.

A `LiftError` is a problem with the user's input or environment (a missing column, a model that
cannot be found offline, ...). Its message is one line that names the problem *and* the fix; the
CLI prints it without a traceback. Anything else that escapes is a bug in liftkit and keeps its
traceback.
"""


class LiftError(Exception):
    """A user-facing error: one line, says what is wrong and what to do about it."""
