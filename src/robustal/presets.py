"""Named protocols: ``paper`` (the study's per-dataset settings) and ``quick`` (minutes on a CPU).

A preset maps each dataset to `RunConfig` field values; `apply_preset` fills them in and lets
every explicitly given setting win. The ``paper`` numbers come from the paper's code
(``config.py``, ``main_al.py``, ``main_al_cifar10.py``):

- MNIST / Fashion-MNIST: LeNet-5 on 32x32 inputs, eps 0.3, step 0.01, PGD-40 training, PGD-50
  evaluation, 200 initial + 200 per round up to 5,000 (Fashion-MNIST 6,000) labels, 10 epochs
  per round, Adam lr 1e-3, batch 100.
- SVHN: VGG8, eps 8/255, step 2/255, PGD-7 training, PGD-50 evaluation, 1,000 + 500 per round
  up to 10,000, 20 epochs, Adam lr 1e-3 (as its ``main_al.py``), batch 100.
- CIFAR-10: ResNet18 (the study also ran VGG16, PreActResNet18, GoogLeNet: use ``--model``),
  same attack, 1,000 + 500 per round up to 25,000, 10 epochs per round, batch 100, SGD
  (momentum 0.9) with peak lr 0.2, weight decay 5e-4 and a cyclic (triangular) schedule.

``quick`` keeps each dataset's attack radius and optimizer family but shrinks everything else
(fewer labels, rounds, epochs and PGD steps, evaluation on a subset) so that a run finishes
in minutes on 2 CPU cores; on SVHN and CIFAR-10 it uses ``small_cnn`` because scoring the
50,000-image pool with the paper's networks takes minutes per round on a CPU.
"""

from __future__ import annotations

from typing import Any

from robustal.errors import ConfigError, unknown_name_error

_MNIST_PAPER = dict(
    model="lenet5", image_size=32, eps=0.3, step_size=0.01, train_steps=40, eval_steps=50,
    initial=200, per_round=200, budget=5000, epochs=10, batch_size=100,
    optimizer="adam", lr=1e-3, weight_decay=0.0, lr_schedule="constant", validation_size=None, test_size=None,
    warm_up="standard",
)  # fmt: skip
_COLOR_ATTACK = dict(eps=8 / 255, step_size=2 / 255)
_MNIST_QUICK = dict(
    _MNIST_PAPER, train_steps=10, step_size=0.04, eval_steps=20, initial=100, per_round=100, budget=400,
    epochs=5, batch_size=50, validation_size=500, test_size=1000,
)  # fmt: skip
_COLOR_QUICK = dict(
    _COLOR_ATTACK, model="small_cnn", image_size=32, train_steps=4, eval_steps=10, initial=200, per_round=200,
    budget=600, epochs=3, batch_size=50, validation_size=500, test_size=1000,
)  # fmt: skip

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "mnist": dict(_MNIST_PAPER, dataset="mnist"),
        "fashion-mnist": dict(_MNIST_PAPER, dataset="fashion-mnist", budget=6000),
        "svhn": dict(
            _MNIST_PAPER, **_COLOR_ATTACK, dataset="svhn", model="vgg8", train_steps=7,
            initial=1000, per_round=500, budget=10_000, epochs=20,
        ),  # fmt: skip
        "cifar10": dict(
            _MNIST_PAPER, **_COLOR_ATTACK, dataset="cifar10", model="resnet18", train_steps=7,
            initial=1000, per_round=500, budget=25_000, epochs=10,
            optimizer="sgd", lr=0.2, weight_decay=5e-4, lr_schedule="cyclic",
        ),  # fmt: skip
    },
    "quick": {
        "digits": dict(
            dataset="digits", model="small_cnn", image_size=8, eps=0.1, step_size=0.025, train_steps=7, eval_steps=20,
            initial=100, per_round=100, budget=400, epochs=8, batch_size=50,
            optimizer="adam", lr=1e-3, weight_decay=0.0, lr_schedule="constant", validation_size=150, test_size=None,
        ),  # fmt: skip
        "mnist": dict(_MNIST_QUICK, dataset="mnist"),
        "fashion-mnist": dict(_MNIST_QUICK, dataset="fashion-mnist"),
        "svhn": dict(_COLOR_QUICK, dataset="svhn", optimizer="adam", lr=1e-3, weight_decay=0.0, lr_schedule="constant"),
        "cifar10": dict(_COLOR_QUICK, dataset="cifar10", optimizer="sgd", lr=0.1, weight_decay=5e-4, lr_schedule="cyclic"),
    },
}

PRESET_DESCRIPTIONS = {
    "paper": "the paper's protocol per dataset (its code's settings); hours to days on a GPU",
    "quick": "each protocol scaled down to finish in minutes on 2 CPU cores",
}


def available_presets() -> list[str]:
    """Names of the presets."""
    return sorted(PRESETS)


def apply_preset(preset: str, dataset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """`RunConfig` settings: preset `preset` for `dataset`, then every entry of `overrides`
    whose value is not None (None means "not given", as for unset command-line flags).

    Unknown presets, and datasets a preset does not cover, raise `ConfigError` listing the
    valid choices.
    """
    if preset not in PRESETS:
        raise unknown_name_error("preset", preset, available_presets())
    table = PRESETS[preset]
    if dataset not in table:
        raise ConfigError(
            f"preset {preset!r} has no settings for dataset {dataset!r}; it covers {', '.join(sorted(table))} "
            "(or give every setting as a flag without --preset)"
        )
    settings = dict(table[dataset])
    settings.update({field: value for field, value in (overrides or {}).items() if value is not None})
    return settings
