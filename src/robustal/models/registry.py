"""The architecture registry: name -> factory(in_channels, num_classes, image_size)."""

from __future__ import annotations

from collections.abc import Callable

from robustal.errors import ConfigError, unknown_name_error
from robustal.models.base import Classifier

ModelFactory = Callable[[int, int, int], Classifier]

_MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering `factory(in_channels, num_classes, image_size) -> Classifier`."""

    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _MODELS:
            raise ConfigError(f"model {name!r} is already registered")
        _MODELS[name] = factory
        return factory

    return decorate


def available_models() -> list[str]:
    """Names of all registered architectures."""
    return sorted(_MODELS)


def check_model_name(name: str) -> None:
    """Raise `ConfigError` listing the valid names when `name` is not registered."""
    if name not in _MODELS:
        raise unknown_name_error("model", name, available_models())


def build_model(name: str, in_channels: int, num_classes: int, image_size: int) -> Classifier:
    """A freshly initialised model `name` for images of shape (in_channels, image_size, image_size)."""
    check_model_name(name)
    model = _MODELS[name](in_channels, num_classes, image_size)
    # how to build it again (checkpoints store this next to the weights)
    model.spec = {"name": name, "in_channels": in_channels, "num_classes": num_classes, "image_size": image_size}
    return model
