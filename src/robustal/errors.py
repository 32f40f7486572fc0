"""The exception hierarchy: every error robustal raises on purpose is a `RobustALError`."""

from collections.abc import Iterator
from contextlib import contextmanager


class RobustALError(Exception):
    """Base class of all errors raised by robustal."""


class ConfigError(RobustALError, ValueError):
    """An invalid setting: unknown name, out-of-range number, inconsistent sizes."""


class DataError(RobustALError):
    """A dataset file is missing, corrupt or not in the expected format."""


class PoolExhaustedError(RobustALError, ValueError):
    """More samples were asked for than the unlabeled pool holds."""


def unknown_name_error(kind: str, name: str, valid: "list[str] | tuple[str, ...]") -> ConfigError:
    """A `ConfigError` for an unknown registry name that lists the valid choices."""
    choices = ", ".join(sorted(valid))
    return ConfigError(f"unknown {kind} {name!r}; valid choices: {choices}")


def error_reason(error: BaseException) -> str:
    """The first line of `error`'s message, or its type's name when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@contextmanager
def decoding_errors(message: str) -> Iterator[None]:
    """Turn any exception raised inside the block into a `DataError` with `message`, in which
    ``{reason}`` stands for the original error (see `error_reason`); robustal's own errors pass.

    For the reads of files users bring or download: their decoders (gzip, zipfile, pickle,
    scipy.io, ...) each fail on damaged bytes with exception types of their own, and a user must
    get the file's name and what to do, not a traceback.
    """
    try:
        yield
    except RobustALError:
        raise
    except Exception as error:
        raise DataError(message.replace("{reason}", error_reason(error))) from error  # not format(): paths may hold braces
