"""The exception hierarchy: every error robustal raises on purpose is a `RobustALError`."""


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
