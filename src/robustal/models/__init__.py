"""Architectures: a registry of classifiers returning logits and a penultimate embedding.

The paper's six: ``lenet5`` (MNIST, Fashion-MNIST), ``vgg8`` (SVHN), ``vgg16``, ``resnet18``,
``preact_resnet18`` and ``googlenet`` (CIFAR-10); plus ``small_cnn`` and ``mlp`` for small data.
"""

from robustal.models import googlenet as _googlenet  # noqa: F401  (registers "googlenet")
from robustal.models import lenet as _lenet  # noqa: F401  (registers "lenet5")
from robustal.models import resnet as _resnet  # noqa: F401  (registers "resnet18", "preact_resnet18")
from robustal.models import small as _small  # noqa: F401  (registers "small_cnn", "mlp")
from robustal.models import vgg as _vgg  # noqa: F401  (registers "vgg8", "vgg16")
from robustal.models.base import Classifier
from robustal.models.registry import available_models, build_model, check_model_name, register_model

__all__ = ["Classifier", "available_models", "build_model", "check_model_name", "register_model"]
