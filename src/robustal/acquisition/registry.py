"""The acquisition registry: name -> AcquisitionFunction class."""

from __future__ import annotations

from typing import Any, TypeVar

from robustal.acquisition.base import AcquisitionFunction
from robustal.errors import ConfigError, unknown_name_error

_ACQUISITIONS: dict[str, type[AcquisitionFunction]] = {}

A = TypeVar("A", bound=type[AcquisitionFunction])


def register_acquisition(cls: A) -> A:
    """Class decorator registering an acquisition function under ``cls.name``."""
    if cls.name in _ACQUISITIONS:
        raise ConfigError(f"acquisition {cls.name!r} is already registered")
    _ACQUISITIONS[cls.name] = cls
    return cls


def available_acquisitions() -> list[str]:
    """Names of all registered acquisition functions."""
    return sorted(_ACQUISITIONS)


def check_acquisition_name(name: str) -> None:
    """Raise `ConfigError` listing the valid names when `name` is not registered."""
    if name not in _ACQUISITIONS:
        raise unknown_name_error("acquisition function", name, available_acquisitions())


def build_acquisition(name: str, **options: Any) -> AcquisitionFunction:
    """An instance of acquisition function `name` with keyword `options`."""
    check_acquisition_name(name)
    try:
        return _ACQUISITIONS[name](**options)
    except TypeError as error:
        raise ConfigError(f"invalid options for acquisition {name!r}: {error}") from error


def identity_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` of acquisition `name` as a run's id names them: with the function's
    ``identity_defaults`` filled in where `options` leaves them unset, and without the options
    equal to their ``neutral_defaults`` (given or not, they leave the id unchanged)."""
    check_acquisition_name(name)
    cls = _ACQUISITIONS[name]
    named = {**cls.identity_defaults, **options}
    return {key: value for key, value in named.items() if key not in cls.neutral_defaults or value != cls.neutral_defaults[key]}
