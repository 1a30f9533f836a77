"""The one exception type that reaches users as a message instead of a traceback."""


class QuantbenchError(Exception):
    """A problem the user can fix: the message names the file/flag at fault and the fix.

    The CLI prints it as ``quantbench: error: <message>`` and exits with status 2; pytest shows it as the
    failure reason. Raise it for bad input and missing prerequisites, never for bugs.

    Example:
        >>> raise QuantbenchError("--dataset reviews.csv: file not found; pass an existing file or 'bundled'")
    """
