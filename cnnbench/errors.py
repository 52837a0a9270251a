"""The one family of errors that the CLI turns into a red line and exit code 1."""


class CnnbenchError(Exception):
    """Base class: a message a user can act on, phrased as "expected X, got Y"."""


class UnknownModelError(CnnbenchError):
    pass


class InvalidOptionError(CnnbenchError):
    pass


class InputSizeError(CnnbenchError):
    pass


class DatasetError(CnnbenchError):
    pass


class InvalidArgumentError(CnnbenchError):
    pass


class DeviceError(CnnbenchError):
    pass


class ResultsError(CnnbenchError):
    """A results file that cannot be read, validated or written."""


class RunFailed(CnnbenchError):
    """A run ended in a failure that its own process could not report (a killed rank, a lost job)."""


class OutOfMemory(CnnbenchError):
    """The device (or the host) ran out of memory during a run."""


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (its first), or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
