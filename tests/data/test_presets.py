"""Presets: the paper's per-dataset protocol, a quick version, explicit settings win."""

import pytest

from cli_helpers import invoke
from robustal.cli.presets import format_setting
from robustal.config import RunConfig, make_config
from robustal.errors import ConfigError
from robustal.presets import PRESETS, apply_preset


def test_paper_protocol_numbers():
    mnist = apply_preset("paper", "mnist")
    assert {k: mnist[k] for k in ("eps", "step_size", "train_steps", "eval_steps", "initial", "per_round", "budget")} == {
        "eps": 0.3, "step_size": 0.01, "train_steps": 40, "eval_steps": 50, "initial": 200, "per_round": 200, "budget": 5000,
    }  # fmt: skip
    assert (mnist["epochs"], mnist["optimizer"], mnist["lr"], mnist["batch_size"], mnist["model"]) == (10, "adam", 1e-3, 100, "lenet5")
    assert apply_preset("paper", "fashion-mnist")["budget"] == 6000
    svhn = apply_preset("paper", "svhn")
    assert (svhn["eps"], svhn["step_size"], svhn["train_steps"]) == (8 / 255, 2 / 255, 7)
    assert (svhn["initial"], svhn["per_round"], svhn["budget"], svhn["epochs"], svhn["model"]) == (1000, 500, 10000, 20, "vgg8")
    cifar = apply_preset("paper", "cifar10")
    assert (cifar["initial"], cifar["per_round"], cifar["budget"], cifar["train_steps"]) == (1000, 500, 25000, 7)
    assert (cifar["optimizer"], cifar["lr_schedule"], cifar["lr"], cifar["weight_decay"]) == ("sgd", "cyclic", 0.2, 5e-4)


@pytest.mark.parametrize("preset, dataset", [(p, d) for p, table in PRESETS.items() for d in table])
def test_every_preset_is_a_valid_run_config(preset, dataset):
    config = make_config(**apply_preset(preset, dataset))
    assert config.dataset == dataset
    assert set(PRESETS[preset][dataset]) <= set(RunConfig.model_fields)


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "svhn", "cifar10"])
def test_quick_is_smaller_than_paper_with_the_same_radius(dataset):
    paper, quick = apply_preset("paper", dataset), apply_preset("quick", dataset)
    assert quick["eps"] == paper["eps"] and quick["optimizer"] == paper["optimizer"]
    for field in ("budget", "epochs", "train_steps", "eval_steps"):
        assert quick[field] < paper[field], field
    assert quick["test_size"] is not None and paper["test_size"] is None


def test_explicit_settings_win_and_none_means_not_given():
    settings = apply_preset("paper", "cifar10", {"epochs": 3, "model": "vgg16", "lr": None, "acquisition": "dre"})
    assert (settings["epochs"], settings["model"], settings["lr"], settings["acquisition"]) == (3, "vgg16", 0.2, "dre")
    assert apply_preset("paper", "cifar10")["epochs"] == 10  # the table itself is not changed


def test_unknown_preset_and_uncovered_dataset():
    with pytest.raises(ConfigError, match="unknown preset 'fast'; valid choices: paper, quick"):
        apply_preset("fast", "mnist")
    with pytest.raises(ConfigError, match="preset 'paper' has no settings for dataset 'digits'; it covers cifar10, fashion-mnist, mnist, svhn"):
        apply_preset("paper", "digits")


def test_format_setting():
    assert [format_setting("eps", 8 / 255), format_setting("step_size", 0.01), format_setting("lr", 0.2)] == ["8/255", "0.01", "0.2"]
    assert [format_setting("budget", 25000), format_setting("test_size", None)] == ["25,000", "all"]


def test_presets_command_prints_both_tables():
    result = invoke("presets", terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "--preset paper" in result.output and "--preset quick" in result.output
    budget_row = next(line for line in result.output.splitlines() if "budget" in line)
    assert [cell.strip() for cell in budget_row.split("│")[2:6]] == ["5,000", "6,000", "10,000", "25,000"]
    assert isinstance(invoke("presets", "nope").exception, ConfigError)
