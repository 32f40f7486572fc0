"""Test selection for retraining: split hygiene, budgets, the robustness gain, resume, the CLI."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from cli_helpers import run_robustal
from robustal.acquisition import available_acquisitions
from robustal.config import make_config
from robustal.errors import ConfigError, DataError
from robustal.evaluation import Metrics
from robustal.loop import CHECKPOINT_FILE, load_checkpoint, run_active_learning
from robustal.retraining import (
    RESULTS_FILE,
    load_problem,
    make_retrain_config,
    resolve_budgets,
    retrain_budget,
    run_retraining,
    split_for_retraining,
)
from run_helpers import RETRAIN, cli_flags

# A model trained *normally* on 300 random digits (about 93% accurate, about 10% robust at eps 0.2).
STANDARD_START = dict(
    dataset="digits", training="standard", initial=300, per_round=300, budget=300, epochs=10, batch_size=50,
    eps=0.2, step_size=0.05, train_steps=5, eval_steps=10, validation_size=100, test_size=100,
)  # fmt: skip
METRICS = ["budget", "selected_count", "clean_accuracy_before", "robust_accuracy_before",
           "clean_accuracy_after", "robust_accuracy_after", "robust_gain", "best_epoch", "validation_score"]


@pytest.fixture(scope="module")
def start_run(tmp_path_factory, digits):
    """A real checkpoint: small_cnn of `STANDARD_START`."""
    out = tmp_path_factory.mktemp("start")
    run_active_learning(make_config(**STANDARD_START), out, dataset=digits)
    return out


def test_split_for_retraining_is_disjoint_and_covers_the_test_split():
    labeled = np.array([5, 3, 900])
    split = split_for_retraining(360, labeled, candidate_fraction=0.5)
    assert np.array_equal(split.candidate_indices, np.arange(180))  # the first part of the test split
    assert np.array_equal(split.evaluation_indices, np.arange(180, 360))  # the rest
    assert np.array_equal(split.labeled_indices, labeled)
    quarter = split_for_retraining(360, labeled, candidate_fraction=0.25, evaluation_size=50)
    assert len(quarter.candidate_indices) == 90 and np.array_equal(quarter.evaluation_indices, np.arange(90, 140))
    train_indices, test_indices = split.retraining_sources(np.array([179, 0, 7]))
    assert np.array_equal(train_indices, labeled) and np.array_equal(test_indices, [179, 0, 7])
    with pytest.raises(ConfigError, match="candidate pool or the evaluation split empty"):
        split_for_retraining(3, labeled, candidate_fraction=0.1)
    with pytest.raises(ConfigError, match="candidate pool or the evaluation split empty"):
        split_for_retraining(3, labeled, candidate_fraction=0.9)


def test_retraining_data_is_the_model_training_data_plus_the_selected_candidates(start_run, digits):
    config = make_retrain_config(checkpoint=str(start_run), acquisition="entropy", budgets="30", **RETRAIN)
    problem = load_problem(config, digits)
    _, _, state = load_checkpoint(start_run)
    split = problem.split
    assert np.array_equal(split.labeled_indices, state["labeled_indices"].numpy()) and len(split.labeled_indices) == 300
    # the candidate pool and the evaluation split are disjoint parts of the test split
    assert len(np.intersect1d(split.candidate_indices, split.evaluation_indices)) == 0
    assert len(split.candidate_indices) == 180 and len(split.evaluation_indices) == RETRAIN["evaluation_size"]
    assert torch.equal(problem.dataset.test.images, digits.test.images[torch.as_tensor(split.evaluation_indices)])

    record, learner = retrain_budget(problem, 30, Metrics(0.0, 0.0))
    selected = np.array(record.selected)
    assert len(np.unique(selected)) == 30 and selected.min() >= 0 and selected.max() < 180
    train_indices, test_indices = split.retraining_sources(selected)
    assert len(np.intersect1d(test_indices, split.evaluation_indices)) == 0  # nothing evaluated is trained on
    # what the model was fine-tuned on: exactly its training data followed by the selected candidates
    original, added = digits.train.subset(torch.as_tensor(train_indices)), digits.test.subset(torch.as_tensor(test_indices))
    assert torch.equal(learner.images[torch.as_tensor(learner.labeled_indices)], torch.cat([original.images, added.images]))
    assert np.array_equal(learner.labels[learner.labeled_indices], torch.cat([original.labels, added.labels]).numpy())
    assert len(learner.pool_indices) == 150  # the unselected candidates


@pytest.mark.parametrize(
    "budgets, pool, expected",
    [
        ("100,200,500", 2500, [100, 200, 500]),
        ("1%,2%,5%", 2500, [25, 50, 125]),
        ("50%, 10, 90", 180, [10, 90]),  # mixed, de-duplicated, ascending
        ([7, "0.5%"], 180, [1, 7]),  # 0.9 samples round to 1
        ("100%", 180, [180]),
    ],
)
def test_budgets_are_counts_or_percentages_of_the_candidate_pool(budgets, pool, expected):
    config = make_retrain_config(checkpoint="runs/x", budgets=budgets)
    assert resolve_budgets(config.budgets, pool) == expected


@pytest.mark.parametrize(
    "budgets, pool, message",
    [
        ("0", 180, "must be at least 1 sample"),
        ("-5", 180, "must be at least 1 sample"),
        ("0%", 180, r"must be in \(0%, 100%\]"),
        ("150%", 180, r"must be in \(0%, 100%\]"),
        ("ten", 180, "neither a count"),
        ("1.5", 180, "neither a count"),
        ("200", 180, "budget 200 exceeds the 180 candidates"),
        ("0.1%", 180, "less than one sample"),
    ],
)
def test_bad_budgets_fail_with_a_clear_error(budgets, pool, message):
    with pytest.raises(ConfigError, match=message):
        resolve_budgets(make_retrain_config(checkpoint="runs/x", budgets=budgets).budgets, pool)


def test_config_validation_and_a_stable_id(start_run, digits):
    with pytest.raises(ConfigError, match="unknown acquisition function 'nope'; valid choices:"):
        make_retrain_config(checkpoint="runs/x", budgets="5", acquisition="nope")
    with pytest.raises(ConfigError, match="candidate_fraction: Input should be less than 1"):
        make_retrain_config(checkpoint="runs/x", budgets="5", candidate_fraction=1.0)
    with pytest.raises(ConfigError, match="no checkpoint at"):
        run_retraining(make_retrain_config(checkpoint=str(start_run / "missing"), budgets="5"), dataset=digits)
    with pytest.raises(ConfigError, match="trained on 'digits', not 'mnist'"):
        run_retraining(make_retrain_config(checkpoint=str(start_run), dataset="mnist", budgets="5"), dataset=digits)
    with pytest.raises(ConfigError, match="budget 181 exceeds the 180 candidates"):
        run_retraining(make_retrain_config(checkpoint=str(start_run), budgets="10,181"), dataset=digits)
    a = make_retrain_config(checkpoint="runs/a", budgets="5")
    assert a.run_id() == make_retrain_config(checkpoint="runs/a/checkpoint.pt", budgets="5,10%").run_id()
    assert a.run_id() != make_retrain_config(checkpoint="runs/a", budgets="5", seed=1).run_id()
    assert a.run_id() != make_retrain_config(checkpoint="runs/a", budgets="5", acquisition="random").run_id()


def test_a_checkpoint_of_other_training_data_is_refused(start_run, digits, tmp_path):
    shutil.copytree(start_run, tmp_path, dirs_exist_ok=True)
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    first = int(state["labeled_indices"][0])
    state["labels"][first] = (state["labels"][first] + 1) % 10
    torch.save(state, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(DataError, match="labels differ from those of the training split of digits"):
        load_problem(make_retrain_config(checkpoint=str(tmp_path), budgets="5"), digits)


def test_adversarial_fine_tuning_raises_robust_accuracy_of_a_standard_model(start_run, digits):
    settings = dict(checkpoint=str(start_run), acquisition="dre", budgets="90", epochs=4, validation_size=100)
    robust = run_retraining(make_retrain_config(**settings), dataset=digits).iloc[0]
    assert robust.robust_accuracy_before < 0.2 and robust.clean_accuracy_before > 0.85  # accurate, not robust
    assert robust.robust_accuracy_after > robust.robust_accuracy_before + 0.15
    assert robust.clean_accuracy_after > robust.clean_accuracy_before - 0.05
    assert robust.robust_gain == pytest.approx(robust.robust_accuracy_after - robust.robust_accuracy_before)
    assert (robust.selected_count, robust.candidates, robust.labeled_before) == (90, 180, 300)
    # the control: the same samples and epochs without adversarial examples add little robustness
    standard = run_retraining(make_retrain_config(**settings, training="standard"), dataset=digits).iloc[0]
    assert standard.robust_accuracy_before == robust.robust_accuracy_before  # same evaluation split and attack draws
    assert standard.robust_gain < robust.robust_gain - 0.1


def test_fine_tuning_is_adversarial_also_from_a_run_with_the_paper_warm_up(digits, tmp_path):
    # a source run of the paper preset trained round 0 with standard training (warm_up): the
    # fine-tune, one fit of a new learner, must not take that for its own warm-up
    run_active_learning(make_config(**STANDARD_START, warm_up="standard"), tmp_path, dataset=digits)
    settings = dict(checkpoint=str(tmp_path), acquisition="random", budgets="90", epochs=4, validation_size=100)
    row = run_retraining(make_retrain_config(**settings), dataset=digits).iloc[0]
    assert row.robust_accuracy_after > row.robust_accuracy_before + 0.15


def test_resume_skips_finished_budgets_and_gives_the_numbers_of_one_run(start_run, digits, tmp_path):
    config = make_retrain_config(checkpoint=str(start_run), acquisition="random", budgets="20,40", **RETRAIN)
    reference = run_retraining(config, dataset=digits)
    first = run_retraining(config.model_copy(update={"budgets": ("20",)}), tmp_path, dataset=digits)
    ran = []
    resumed = run_retraining(config, tmp_path, dataset=digits, on_budget=lambda record: ran.append(record.budget))
    assert ran == [40]  # budget 20 was done
    stored = pd.read_parquet(tmp_path / RESULTS_FILE)
    assert list(stored["budget"]) == [20, 40]
    assert stored["seconds"].iloc[0] == first["seconds"].iloc[0]  # the stored row, not a recomputation
    pd.testing.assert_frame_equal(resumed[METRICS], reference[METRICS])
    assert [list(s) for s in resumed["selected"]] == [list(s) for s in reference["selected"]]
    assert reference["selected"].iloc[0] != reference["selected"].iloc[1]
    with pytest.raises(ConfigError, match="choose another --out"):
        run_retraining(config.model_copy(update={"seed": 1}), tmp_path, dataset=digits)


@pytest.mark.parametrize("acquisition", available_acquisitions())
def test_every_acquisition_function_selects_from_the_candidate_pool(start_run, digits, acquisition):
    config = make_retrain_config(checkpoint=str(start_run), acquisition=acquisition, budgets="10", **RETRAIN)
    row = run_retraining(config, dataset=digits).iloc[0]
    selected = np.array(row.selected)
    assert row.selected_count == 10 and len(np.unique(selected)) == 10
    assert selected.min() >= 0 and selected.max() < 180
    assert 0 <= row.robust_accuracy_after <= row.clean_accuracy_after  # robust: correct with and without attack


def test_cli_retrains_with_each_function_and_writes_the_table(start_run, digits, tmp_path):
    result = run_robustal(
        "retrain", "--checkpoint", start_run / "checkpoint.pt", "--acquisition", "random,entropy", "--budgets", "10%,30",
        *cli_flags(RETRAIN), "--seed", "2", "--out", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "robustness gain over the starting model" in result.stdout
    tables = {name: pd.read_parquet(tmp_path / name / RESULTS_FILE) for name in ("random", "entropy")}
    for name, table in tables.items():
        assert list(table["budget"]) == [18, 30] and list(table["selected_count"]) == [18, 30]
        assert set(table["acquisition"]) == {name} and set(table["seed"]) == {2} and set(table["dataset"]) == {"digits"}
        assert np.allclose(table["robust_gain"], table["robust_accuracy_after"] - table["robust_accuracy_before"])
    # the same starting model and evaluation draws for every function
    assert tables["random"]["robust_accuracy_before"].tolist() == tables["entropy"]["robust_accuracy_before"].tolist()
    # the command gives the library's numbers
    library = run_retraining(
        make_retrain_config(checkpoint=str(start_run), acquisition="entropy", budgets="10%,30", seed=2, **RETRAIN), dataset=digits
    )
    pd.testing.assert_frame_equal(tables["entropy"][METRICS], library[METRICS])

    failed = run_robustal("retrain", "--checkpoint", start_run, "--budgets", "500", "--out", tmp_path / "x")
    assert failed.returncode == 2 and "budget 500 exceeds the 180 candidates" in failed.stderr
    assert "Traceback" not in failed.stderr and not (tmp_path / "x" / "dre" / RESULTS_FILE).exists()


def test_a_relative_checkpoint_is_read_from_root_and_keeps_its_id(start_run, digits, tmp_path):
    # a study stores `runs/<run id>` relative to its directory, so that the directory can move
    moved = tmp_path / "study"
    shutil.copytree(start_run, moved / "runs" / "source")
    config = make_retrain_config(checkpoint="runs/source", acquisition="random", budgets="10", **RETRAIN)
    table = run_retraining(config, tmp_path / "out", dataset=digits, root=moved)
    assert table["run_id"].iloc[0] == config.run_id() and list(table["budget"]) == [10]
    with pytest.raises(ConfigError, match="no checkpoint at runs/source"):
        run_retraining(config, dataset=digits)  # relative to the working directory without a root


def test_validation_errors_read_the_same_for_runs_and_retraining():
    with pytest.raises(ConfigError, match=r"^invalid run settings: epochs: Input should be greater than or equal to 1$"):
        make_config(epochs=0)
    with pytest.raises(ConfigError, match=r"^invalid retraining settings: epochs: Input should be greater than or equal to 1$"):
        make_retrain_config(checkpoint="runs/x", budgets="5", epochs=0)
    with pytest.raises(ConfigError, match=r"^invalid run settings: budget \(10\) must be at least the initial"):
        make_config(budget=10, initial=20)  # a model-level problem: no setting name in front


def test_a_damaged_results_file_is_set_aside_and_the_budgets_computed_again(start_run, digits, tmp_path):
    config = make_retrain_config(checkpoint=str(start_run), acquisition="random", budgets="30", epochs=1, validation_size=50)
    first = run_retraining(config, tmp_path, dataset=digits)
    data = (tmp_path / RESULTS_FILE).read_bytes()
    (tmp_path / RESULTS_FILE).write_bytes(data[: len(data) // 3])
    with pytest.warns(UserWarning, match="computing every budget again"):
        again = run_retraining(config, tmp_path, dataset=digits)
    assert (tmp_path / (RESULTS_FILE + ".damaged")).exists()
    assert again["robust_accuracy_after"].tolist() == first["robust_accuracy_after"].tolist()
