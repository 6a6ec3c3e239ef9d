"""The one error type for problems a user can fix (bad input, file, flag, or setting).

It subclasses ValueError, so library callers can catch either; the command line prints its
message as one line and exits with status 2, without a traceback.
"""


class NnetError(ValueError):
    """A problem with what the user gave nnet; the message says what and what to do."""
