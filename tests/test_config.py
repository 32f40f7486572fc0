"""Run settings: validation before compute with messages listing the valid choices, stable ids."""

import pytest

from robustal.config import make_config
from robustal.errors import ConfigError


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"dataset": "cifar100"}, "unknown dataset 'cifar100'; valid choices: .*digits.*mnist"),
        ({"model": "resnet9000"}, "unknown model 'resnet9000'; valid choices: .*lenet5"),
        ({"acquisition": "entropyy"}, "unknown acquisition function 'entropyy'; valid choices: .*entropy.*random"),
        ({"training": "trades2"}, "unknown training regime 'trades2'; valid choices: pgd, standard"),
        ({"eps": -0.1}, "eps: Input should be greater than or equal to 0"),
        ({"initial": 300, "budget": 200}, r"budget \(200\) must be at least the initial labeled set \(300\)"),
        ({"per_round": 0}, "per_round"),
        ({"unknown_setting": 1}, "unknown_setting"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_fix(settings, message):
    with pytest.raises(ConfigError, match=message):
        make_config(**settings)


def test_defaults_are_the_papers_mnist_protocol():
    config = make_config(dataset="mnist")
    assert (config.eps, config.step_size, config.train_steps, config.eval_steps) == (0.3, 0.01, 40, 50)
    assert (config.initial, config.per_round, config.epochs, config.batch_size, config.lr) == (200, 200, 10, 100, 1e-3)
    assert config.model_name == "lenet5"
    assert config.rounds == 4


def test_run_id_is_stable_and_ignores_paths_and_devices():
    a = make_config(dataset="mnist", seed=1)
    assert a.run_id() == make_config(dataset="mnist", seed=1, data_root="/elsewhere", device="cpu").run_id()
    assert a.run_id() == make_config(dataset="mnist", model="lenet5", seed=1).run_id()
    assert a.run_id() != make_config(dataset="mnist", seed=2).run_id()
    assert len(a.run_id()) == 16


def test_augmentation_defaults_to_the_dataset_and_enters_the_id_only_when_set():
    assert make_config(dataset="cifar10").uses_augmentation
    assert make_config(dataset="svhn").uses_augmentation
    assert not make_config(dataset="digits").uses_augmentation
    assert make_config(dataset="digits", augment=True).uses_augmentation
    assert make_config(dataset="cifar10", augment=False).uses_augmentation is False
    assert "augment" not in make_config().identity()
    assert make_config(augment=True).run_id() != make_config().run_id()
