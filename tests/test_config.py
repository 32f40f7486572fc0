"""Run settings: validation before compute with messages listing the valid choices, stable ids."""

import pytest

from robustal.config import make_config
from robustal.errors import ConfigError
from robustal.retraining import make_retrain_config


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"dataset": "cifar100"}, "unknown dataset 'cifar100'; valid choices: .*digits.*mnist"),
        ({"model": "resnet9000"}, "unknown model 'resnet9000'; valid choices: .*lenet5"),
        ({"acquisition": "entropyy"}, "unknown acquisition function 'entropyy'; valid choices: .*entropy.*random"),
        ({"training": "trades2"}, "unknown training regime 'trades2'; valid choices: pgd, standard, trades"),
        ({"norm": "l1"}, "unknown norm 'l1'; valid choices: l2, linf"),
        ({"eps": -0.1}, "eps: Input should be greater than or equal to 0"),
        ({"initial": 300, "budget": 200}, r"budget \(200\) must be at least the initial labeled set \(300\)"),
        ({"per_round": 0}, "per_round"),
        ({"unknown_setting": 1}, "unknown_setting"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_fix(settings, message):
    with pytest.raises(ConfigError, match=message):
        make_config(**settings)


PIXEL_RANGE = r"beyond the \[0, 1\] pixel range"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"eps": float("inf")}, "eps: Input should be a finite number"),  # what `--eps 1e400` gives
        ({"eps": float("nan")}, "eps: Input should be a finite number"),
        ({"step_size": float("inf")}, "step_size: Input should be a finite number"),
        ({"lr": float("inf")}, "lr: Input should be a finite number"),
        ({"weight_decay": float("nan")}, "weight_decay: Input should be a finite number"),
        ({"eps": 1.5}, f"eps: 1.5 is {PIXEL_RANGE}"),
        ({"step_size": 2}, f"step_size: 2.0 is {PIXEL_RANGE}"),
        ({"eps": 2.0}, "for an L2 radius, set norm to l2"),
        ({"norm": "l2", "eps": 101}, "eps: 101.0 is beyond 100, the bound of L2 radii and steps"),
        ({"norm": "l2", "step_size": 1e3}, "step_size: 1000.0 is beyond 100"),
        ({"trades_beta": 0}, "trades_beta: Input should be greater than 0"),
        ({"trades_beta": 101}, "trades_beta: Input should be less than or equal to 100"),
        ({"image_size": 3000}, r"image size 3000 of digits is outside 1..512: every split is resized in memory"),
        ({"batch_size": 10**9}, "batch_size: Input should be less than or equal to 65536"),
        ({"epochs": 10**9}, "epochs: Input should be less than or equal to 10000"),
        ({"train_steps": 10**9}, "train_steps: Input should be less than or equal to 10000"),
        ({"eval_steps": 10**9}, "eval_steps: Input should be less than or equal to 10000"),
    ],
)
def test_numbers_must_be_finite_and_within_their_range(settings, message):
    with pytest.raises(ConfigError, match=message):
        make_config(**settings)


def test_the_bounds_themselves_are_accepted():
    config = make_config(eps=1.0, step_size=1.0, image_size=512, batch_size=65536, epochs=10_000)
    assert (config.eps, config.step_size, config.image_size) == (1.0, 1.0, 512)
    config = make_config(norm="l2", eps=100, step_size=100, training="trades", trades_beta=100)
    assert (config.eps, config.step_size, config.trades_beta) == (100, 100, 100)


@pytest.mark.parametrize(
    "settings, message",
    [({"eps": float("inf")}, "eps: Input should be a finite number"), ({"step_size": 1.5}, f"step_size: 1.5 is {PIXEL_RANGE}")],
)
def test_retraining_settings_are_bounded_like_run_settings(settings, message):
    with pytest.raises(ConfigError, match=message):
        make_retrain_config(checkpoint="runs/x", budgets="10", **settings)


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


# The defaults of the settings that enter run ids. A setting at its default is left out of the id
# (`RunConfig.identity`), so changing a default would silently give the old id to other runs:
# never change one; a new setting joins this table with its default (earlier ids stay valid).
IDENTITY_DEFAULTS = {
    "dataset": "digits", "model": None, "image_size": None, "acquisition": "random", "acquisition_options": {},
    "training": "pgd", "warm_up": "same", "initial": 200, "per_round": 200, "budget": 1000, "epochs": 10,
    "batch_size": 100, "optimizer": "adam", "lr": 0.001, "weight_decay": 0.0, "lr_schedule": "constant", "eps": 0.3,
    "step_size": 0.01, "train_steps": 40, "eval_steps": 50, "validation_size": None, "test_size": None,
    "retrain_from_scratch": False, "augment": None, "seed": 0, "precision": "fp32", "channels_last": False,
    "fold_batchnorm": False, "compile": False, "trades_beta": 6.0, "norm": "linf",
}  # fmt: skip


def test_defaults_of_identity_settings_never_change():
    from robustal.config import NON_IDENTITY_FIELDS, RunConfig

    current = {
        name: field.get_default(call_default_factory=True)
        for name, field in RunConfig.model_fields.items()
        if name not in NON_IDENTITY_FIELDS
    }
    assert current == IDENTITY_DEFAULTS


def test_run_ids_leave_out_defaults_so_new_settings_keep_old_ids():
    from robustal.config import RunConfig, stable_id

    config = make_config(dataset="mnist", acquisition="entropy", seed=3, eps=0.2)
    assert config.identity() == {"dataset": "mnist", "model": "lenet5", "acquisition": "entropy", "seed": 3, "eps": 0.2}
    assert config.run_id() == stable_id(config.identity())
    # everything a run computes with is still in its resolved settings (the study manifest)
    assert config.resolved_settings()["epochs"] == 10 and config.resolved_settings()["precision"] == "fp32"

    class Later(RunConfig):  # a version of RunConfig with one more setting, at its default
        new_setting: int = 0

    assert Later(**config.model_dump()).run_id() == config.run_id()
    assert Later(**config.model_dump(), new_setting=1).run_id() != config.run_id()
    # the id this run had before `norm` and `trades_beta` existed (robustal at 4c547df)
    assert config.run_id() == "d7a2640fd8dcb011"


def test_trades_beta_enters_the_id_only_where_trades_reads_it():
    trades = make_config(training="trades", trades_beta=3.0)
    assert trades.identity()["trades_beta"] == 3.0 and trades.run_id() != make_config(training="trades").run_id()
    # pgd training never reads beta: the same run, the same id, whatever beta says
    assert make_config(trades_beta=3.0).run_id() == make_config().run_id()
    assert make_config(norm="l2").identity()["norm"] == "l2"


def test_retraining_settings_are_an_update_of_the_run_settings():
    config = make_retrain_config(checkpoint="runs/a", budgets="5%", epochs=3, eps=None, updates={"lr": 0.01})
    assert config.updates == {"lr": 0.01, "epochs": 3}  # None: the checkpoint's
    assert make_retrain_config(checkpoint="runs/a", budgets="5%", updates={"epochs": 3, "lr": 0.01}) == config
    assert config.identity() == {
        "kind": "retrain", "checkpoint": "runs/a", "acquisition_options": {"quota": "paper"}, "updates": {"epochs": 3, "lr": 0.01}
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"settings: eps: 3\.0 is beyond the \[0, 1\] pixel range"):
        make_retrain_config(checkpoint="a", budgets="1", eps=3)
    with pytest.raises(ConfigError, match="settings: dataset cannot change in a fine-tune; these can: epochs"):
        make_retrain_config(checkpoint="a", budgets="1", updates={"dataset": "mnist"})
