"""Architectures: a registry of classifiers returning logits and a penultimate embedding."""

from robustal.models import lenet as _lenet  # noqa: F401  (registers "lenet5")
from robustal.models import small as _small  # noqa: F401  (registers "small_cnn", "mlp")
from robustal.models.base import Classifier
from robustal.models.registry import available_models, build_model, check_model_name, register_model

__all__ = ["Classifier", "available_models", "build_model", "check_model_name", "register_model"]
