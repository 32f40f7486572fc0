"""The command line as a user runs it (a subprocess): results on disk, clear errors, exit codes."""

import pandas as pd
import pytest

from cli_helpers import run_robustal
from run_helpers import STUDY_RUN, cli_flags


def test_run_writes_rounds_config_and_checkpoint(tmp_path):
    out = tmp_path / "run"
    settings = dict(STUDY_RUN, acquisition="entropy", training="pgd", initial=40, per_round=40, budget=80, seed=3)
    result = run_robustal("run", *cli_flags(settings), "--out", out)
    assert result.returncode == 0, result.stderr
    assert "final: 80 labels" in result.stdout
    rounds = pd.read_parquet(out / "rounds.parquet")
    assert list(rounds["labeled"]) == [40, 80]
    assert set(rounds["acquisition"]) == {"entropy"} and set(rounds["seed"]) == {3}
    assert (out / "config.json").exists() and (out / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'; valid choices: cifar10, digits, fashion-mnist, mnist, svhn"),
        (["--acquisition", "nope"], "unknown acquisition function 'nope'; valid choices:"),
        (["--model", "nope"], "unknown model 'nope'; valid choices:"),
        (["--eps", "-1"], "eps: Input should be greater than or equal to 0"),
        (["--budget", "100000", "--initial", "10"], "budget 100000 exceeds the 1077 training samples"),
    ],
)
def test_bad_arguments_fail_fast_with_the_valid_choices(tmp_path, args, message):
    result = run_robustal("run", "--out", tmp_path / "x", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x" / "rounds.parquet").exists()


def test_demo_prints_a_table_and_saves_a_learning_curve(tmp_path):
    result = run_robustal("demo", "--acquisitions", "random", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "robustness %" in result.stdout and "random" in result.stdout
    png = (tmp_path / "learning_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    results = pd.read_parquet(tmp_path / "results.parquet")
    assert list(results["labeled"]) == [100, 200, 300, 400]
    assert results["clean_accuracy"].iloc[-1] > 0.8
