"""The architecture registry: name -> factory(in_channels, num_classes, image_size).

Besides registered names, ``MODULE:FUNCTION`` names a model of the user's own: the function
``FUNCTION(in_channels, num_classes, image_size)`` defined in the importable module ``MODULE``
returns a `Classifier` or an ``nn.Sequential`` ending in ``nn.Linear`` (its last layer becomes the
head, the rest the embedding). Importing the module runs its code: that is the point (it is the
user's code), so the name is only checked at validation and the module is imported when the
model is built. Standard-library modules and functions not defined in the module itself
(builtins, imported names) are refused, so a run directory or checkpoint naming a model cannot
make robustal call an arbitrary library function.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable

import torch
from torch import nn

from robustal.errors import ConfigError, unknown_name_error
from robustal.models.base import Classifier

ModelFactory = Callable[[int, int, int], Classifier]

_MODELS: dict[str, ModelFactory] = {}
CUSTOM_FORM = "MODULE:FUNCTION, e.g. my_models:build (a function build(in_channels, num_classes, image_size))"


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


def is_custom_model(name: str) -> bool:
    """Whether `name` is a ``MODULE:FUNCTION`` model of the user's own."""
    return ":" in name


def _custom_parts(name: str) -> tuple[str, str]:
    """(module, function) of ``MODULE:FUNCTION`` `name`, checked without importing anything."""
    module, _, function = name.partition(":")
    if not all(part.isidentifier() for part in module.split(".")) or not function.isidentifier():
        raise ConfigError(f"model {name!r}: write {CUSTOM_FORM}")
    top = module.split(".")[0]
    if top in sys.stdlib_module_names:
        raise ConfigError(f"model {name!r}: {top} is a standard-library module; name a module of your own ({CUSTOM_FORM})")
    if importlib.util.find_spec(top) is None:
        raise ConfigError(
            f"model {name!r}: no module named {top!r}; put {module.replace('.', '/')}.py in a folder on PYTHONPATH "
            f"(e.g. PYTHONPATH=. when it is in the current folder) or install its package"
        )
    return module, function


def check_model_name(name: str) -> None:
    """Raise `ConfigError` listing the valid names when `name` is not registered (a
    ``MODULE:FUNCTION`` name: when it is malformed or its module cannot be found)."""
    if is_custom_model(name):
        _custom_parts(name)
    elif name not in _MODELS:
        error = unknown_name_error("model", name, available_models())
        raise ConfigError(f"{error}; or a model of your own as {CUSTOM_FORM}")


def custom_factory(name: str) -> Callable[..., nn.Module]:
    """The function of ``MODULE:FUNCTION`` `name`, imported (this runs the module's code)."""
    module_name, function_name = _custom_parts(name)
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - whatever the user's module raises on import
        raise ConfigError(f"model {name!r}: importing {module_name} failed: {type(error).__name__}: {error}") from error
    function = getattr(module, function_name, None)
    if not inspect.isfunction(function) or function.__module__ != module.__name__:
        raise ConfigError(f"model {name!r}: {module.__file__} defines no function {function_name!r} (def {function_name}(...))")
    return function


def as_classifier(model: object, name: str, in_channels: int, num_classes: int, image_size: int) -> Classifier:
    """What a custom factory returned, as a `Classifier` whose logits have `num_classes` classes."""
    if isinstance(model, nn.Sequential) and not isinstance(model, Classifier) and isinstance(model[-1], nn.Linear):
        model = Classifier(nn.Sequential(*list(model)[:-1]), model[-1])
    if not isinstance(model, Classifier):
        raise ConfigError(
            f"model {name!r} returned {type(model).__name__}; return a robustal.models.Classifier(features, head) or an "
            "nn.Sequential ending in nn.Linear (acquisition functions need the embedding before the last layer)"
        )
    if model.head.out_features != num_classes:
        raise ConfigError(f"model {name!r} has {model.head.out_features} outputs but the dataset has {num_classes} classes")
    was_training = model.training
    try:
        with torch.no_grad():
            logits = model.eval()(torch.zeros(2, in_channels, image_size, image_size))
    except Exception as error:  # noqa: BLE001 - any failure of the user's forward pass
        raise ConfigError(
            f"model {name!r} fails on a batch of images of shape (2, {in_channels}, {image_size}, {image_size}): "
            f"{type(error).__name__}: {error}"
        ) from error
    finally:
        model.train(was_training)
    if tuple(logits.shape) != (2, num_classes):
        raise ConfigError(f"model {name!r} returns outputs of shape {tuple(logits.shape)} for 2 images, not (2, {num_classes})")
    return model


def build_model(name: str, in_channels: int, num_classes: int, image_size: int) -> Classifier:
    """A freshly initialised model `name` for images of shape (in_channels, image_size, image_size)."""
    check_model_name(name)
    if is_custom_model(name):
        factory = custom_factory(name)
        try:
            inspect.signature(factory).bind(in_channels, num_classes, image_size)
        except TypeError:
            raise ConfigError(f"model {name!r}: the function must take (in_channels, num_classes, image_size)") from None
        model = as_classifier(factory(in_channels, num_classes, image_size), name, in_channels, num_classes, image_size)
    else:
        model = _MODELS[name](in_channels, num_classes, image_size)
    # how to build it again (checkpoints store this next to the weights)
    model.spec = {"name": name, "in_channels": in_channels, "num_classes": num_classes, "image_size": image_size}
    return model
