"""The active learning loop: bookkeeping, seeded reproducibility, resume, query/teach API."""

import numpy as np
import pandas as pd
import pytest
import torch

from run_helpers import tiny_settings
from robustal.acquisition import build_acquisition
from robustal.config import make_config
from robustal.errors import ConfigError
from robustal.loop import CHECKPOINT_FILE, ROUNDS_FILE, build_learner, load_checkpoint, run_active_learning
from robustal.rundir import round_checkpoint_name


@pytest.fixture(scope="module")
def entropy_run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("entropy-run")


@pytest.fixture(scope="module")
def entropy_run(digits, entropy_run_dir):
    """3 rounds of entropy selection, written to `entropy_run_dir` with every round's checkpoint."""
    config = make_config(**tiny_settings(acquisition="entropy", keep_round_checkpoints=True))
    return run_active_learning(config, entropy_run_dir, dataset=digits)


def test_rounds_label_per_round_until_budget_without_relabeling(entropy_run, digits):
    records = entropy_run.records
    assert [r.labeled for r in records] == [30, 60, 90]
    assert [len(r.selected) for r in records] == [30, 30, 30]
    selected = np.concatenate([r.selected for r in records])
    assert len(np.unique(selected)) == len(selected) == 90  # no index labeled twice
    learner = entropy_run.learner
    assert np.array_equal(learner.labeled_indices, selected)
    labeled_and_pool = np.sort(np.concatenate([learner.labeled_indices, learner.pool_indices]))
    assert np.array_equal(labeled_and_pool, np.arange(len(digits.train)))  # labeled + pool = all
    assert np.array_equal(learner.labels[selected], digits.train.labels[selected].numpy())
    for record in records:
        assert 0 <= record.clean_accuracy <= 1 and 0 <= record.robust_accuracy <= 1
        assert record.robust_accuracy <= record.clean_accuracy  # robust: correct with and without attack
        assert record.train_seconds > 0 and record.eval_seconds > 0


def test_last_round_takes_only_what_is_left_of_the_budget(digits):
    result = run_active_learning(make_config(**tiny_settings(budget=80, epochs=1)), dataset=digits)
    assert [r.labeled for r in result.records] == [30, 60, 80]


def test_entropy_selects_the_most_uncertain_pool_samples(entropy_run, entropy_run_dir, digits):
    """Round r's selection is the pool's highest-entropy samples under the model that selected
    them: round r - 1's kept checkpoint, its entropies computed here from the model's outputs."""
    records = entropy_run.records
    for round_number in (1, 2):
        model, _, _ = load_checkpoint(entropy_run_dir / round_checkpoint_name(round_number - 1))
        labeled = np.concatenate([record.selected for record in records[:round_number]])
        pool = np.setdiff1d(np.arange(len(digits.train)), labeled)
        with torch.no_grad():
            log_p = torch.log_softmax(model.eval()(digits.train.images[pool].float() / 255).double(), dim=1)
        entropies = -(log_p.exp() * log_p).sum(dim=1).numpy()
        chosen = np.isin(pool, records[round_number].selected)
        assert chosen.sum() == len(records[round_number].selected) == 30  # every selected one was in the pool
        # the 30 chosen are the 30 highest entropies (ties aside: every chosen one is at least as
        # uncertain as every one left in the pool). After 2 epochs on 30 labels every entropy is
        # near log(10) (the pool's top 10% spans about 1e-4), so the tolerance covers float noise
        # only: the next round's model misranks these samples by far more (about 5e-4).
        assert entropies[chosen].min() >= entropies[~chosen].max() - 1e-6


def test_same_seed_same_selections_and_metrics(digits):
    config = make_config(**tiny_settings(acquisition="entropy"))
    first = run_active_learning(config, dataset=digits).table()
    second = run_active_learning(config, dataset=digits).table()
    pd.testing.assert_frame_equal(
        first.drop(columns=[c for c in first if c.endswith("seconds")]),
        second.drop(columns=[c for c in second if c.endswith("seconds")]),
    )
    other = run_active_learning(make_config(**tiny_settings(acquisition="entropy", seed=1)), dataset=digits).table()
    assert other["selected"].iloc[0] != first["selected"].iloc[0]


def test_run_writes_results_and_resumes_after_interruption(tmp_path, digits):
    config = make_config(**tiny_settings(acquisition="entropy"))
    reference = run_active_learning(config, dataset=digits).table()

    calls = []

    def interrupt(record):
        calls.append(record.round)
        if record.round == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_active_learning(config, tmp_path, dataset=digits, on_round=interrupt)
    assert len(pd.read_parquet(tmp_path / ROUNDS_FILE)) == 2
    resumed = run_active_learning(config, tmp_path, dataset=digits, on_round=lambda record: calls.append(record.round))
    assert calls[-1] == 2 and len(calls) == 3  # only round 2 ran again
    stored = pd.read_parquet(tmp_path / ROUNDS_FILE)
    metrics = ["labeled", "clean_accuracy", "robust_accuracy", "validation_score", "best_epoch"]
    pd.testing.assert_frame_equal(stored[metrics], reference[metrics])
    assert [list(s) for s in stored["selected"]] == list(reference["selected"])
    assert len(resumed.records) == 3

    model, loaded_config, state = load_checkpoint(tmp_path)
    assert loaded_config == config
    for name, tensor in resumed.learner.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor)


def test_resume_refuses_another_configuration(tmp_path, digits):
    run_active_learning(make_config(**tiny_settings(budget=30, epochs=1)), tmp_path, dataset=digits)
    assert (tmp_path / CHECKPOINT_FILE).exists()
    with pytest.raises(ConfigError, match="another --out"):
        run_active_learning(make_config(**tiny_settings(budget=30, epochs=1, seed=5)), tmp_path, dataset=digits)


def test_budget_larger_than_the_pool_fails_before_training(digits):
    with pytest.raises(ConfigError, match="exceeds the 1077 training samples"):
        run_active_learning(make_config(**tiny_settings(budget=5000)), dataset=digits)


def test_query_teach_api_for_real_labeling(entropy_run):
    learner = entropy_run.learner
    before = len(learner.pool_indices)
    chosen = learner.query(5)
    assert len(chosen) == 5 and np.isin(chosen, learner.pool_indices).all()
    learner.teach(chosen, np.arange(5))
    assert len(learner.pool_indices) == before - 5
    with pytest.raises(ConfigError, match="labeled twice"):
        learner.teach(chosen[:1], np.array([0]))
    with pytest.raises(ConfigError):
        learner.teach(learner.query(2), np.array([1]))


@pytest.mark.parametrize(
    "indices, labels, message",
    [
        ([-1], [0], r"indices \[-1\] are outside the pool \(0..1076\)"),  # would label the last sample
        ([1077], [0], r"indices \[1077\] are outside the pool"),
        ([3, 4], [0, 10], r"labels \[10\] are not classes of the model \(0..9\)"),
        ([3, 4], [0, -2], r"labels \[-2\] are not classes"),
        ([3, 4], [0, 10**12], r"labels \[1000000000000\] are not classes"),
        ([3.7], [0], "indices must be integers, got float64"),
        ([3], [1.5], "labels must be integers, got float64"),
        ([[3, 4]], [[0, 1]], "give two 1-D arrays of one length"),
        ([3, 4], [0], "2 indices but 1 labels"),
    ],
)
def test_teach_refuses_bad_indices_and_labels_and_keeps_its_state(digits, indices, labels, message):
    learner, _ = build_learner(make_config(**tiny_settings()), digits)
    learner.teach(np.array([0, 1]), np.array([5, 6]))
    with pytest.raises(ConfigError, match=message):
        learner.teach(np.array(indices), np.array(labels))
    assert learner.labeled_indices.tolist() == [0, 1]
    assert learner.labels[:5].tolist() == [5, 6, -1, -1, -1] and (learner.labels[2:] == -1).all()


def test_random_acquisition_differs_from_entropy(digits, entropy_run):
    random_run = run_active_learning(make_config(**tiny_settings(acquisition="random")), dataset=digits)
    assert random_run.records[0].selected == entropy_run.records[0].selected  # same initial set
    assert random_run.records[1].selected != entropy_run.records[1].selected
    assert build_acquisition("random").name == "random"


def test_paper_warm_up_trains_round_zero_normally_then_adversarially(digits):
    warm = run_active_learning(make_config(**tiny_settings(warm_up="standard")), dataset=digits)
    standard = run_active_learning(make_config(**tiny_settings(training="standard", budget=30)), dataset=digits)
    same = run_active_learning(make_config(**tiny_settings(budget=30)), dataset=digits)
    # round 0 of the warm-up run is exactly a standard-trained round 0 (best epoch by clean accuracy)
    first = warm.records[0]
    assert first.selected == standard.records[0].selected == same.records[0].selected
    assert (first.clean_accuracy, first.robust_accuracy, first.best_epoch, first.validation_score) == (
        standard.records[0].clean_accuracy, standard.records[0].robust_accuracy,
        standard.records[0].best_epoch, standard.records[0].validation_score,
    )  # fmt: skip
    # and not the adversarially trained round 0 (a different model: its metrics differ)
    metrics = ("clean_accuracy", "robust_accuracy", "best_epoch", "validation_score")
    assert [getattr(first, name) for name in metrics] != [getattr(same.records[0], name) for name in metrics]
    # later rounds train adversarially: validation scores are robust accuracies, below clean accuracy
    assert all(r.validation_score <= r.clean_accuracy + 0.1 for r in warm.records[1:])
    assert warm.records[1].robust_accuracy > 0


def test_warm_up_is_part_of_the_run_id_and_same_keeps_old_ids():
    same = make_config(**tiny_settings())
    assert make_config(**tiny_settings(warm_up="same")).run_id() == same.run_id()
    assert "warm_up" not in same.identity()
    assert make_config(**tiny_settings(warm_up="standard")).run_id() != same.run_id()
    with pytest.raises(ConfigError, match="unknown warm-up 'adversarial'; valid choices: same, standard"):
        make_config(**tiny_settings(warm_up="adversarial"))


def test_dre_runs_name_their_quota_in_the_id():
    plain = make_config(**tiny_settings(acquisition="dre"))
    paper = make_config(**tiny_settings(acquisition="dre", acquisition_options={"quota": "paper"}))
    proportional = make_config(**tiny_settings(acquisition="dre", acquisition_options={"quota": "proportional"}))
    assert plain.identity()["acquisition_options"] == {"quota": "paper"}
    assert plain.run_id() == paper.run_id() != proportional.run_id()
    assert "acquisition_options" not in make_config(**tiny_settings(acquisition="entropy")).identity()  # {} is the default


def test_a_run_written_under_an_earlier_id_resumes_and_takes_the_current_id(digits, tmp_path):
    from robustal.rundir import read_config, rename_job

    config = make_config(**tiny_settings(budget=50))
    first = run_active_learning(config, tmp_path / "run", dataset=digits)
    earlier = tmp_path / "earlier"
    rename_job(tmp_path / "run", earlier, {config.run_id(): "0123456789abcdef"})  # as an older version wrote it
    assert load_checkpoint(earlier)[2]["run_id"] == "0123456789abcdef"  # still loads: config.json names that id
    resumed = []
    again = run_active_learning(config, earlier, dataset=digits, on_resume=resumed.append)
    assert [r.round for r in resumed[0]] == [0, 1] and again.records == first.records  # nothing computed again
    assert read_config(earlier)["run_id"] == config.run_id() == load_checkpoint(earlier)[2]["run_id"]
    other = make_config(**tiny_settings(budget=50, seed=1))
    with pytest.raises(ConfigError, match="holds run"):
        run_active_learning(other, earlier, dataset=digits)
