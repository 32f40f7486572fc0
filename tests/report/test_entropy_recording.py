"""The loop records, every acquisition round, histograms of the prediction entropies of the pool
and of the selected samples (what the report's selection analysis reads); runs recorded before
these fields existed still resume and still report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from run_helpers import tiny_settings
from robustal import loop
from robustal.config import make_config
from robustal.loop import (
    CHECKPOINT_FILE,
    ENTROPY_BINS,
    ROUNDS_FILE,
    build_learner,
    entropy_histograms,
    load_checkpoint,
    run_active_learning,
)
from robustal.report.selections import HISTOGRAM_COLUMNS, entropy_distributions
from robustal.runtime import to_float
from robustal.seeding import numpy_rng


def test_every_acquisition_round_records_the_pool_and_the_selection(tiny_study):
    for path in sorted(tiny_study.glob("runs/*/rounds.parquet")):
        rounds = pd.read_parquet(path)
        assert rounds["pool_entropy_histogram"].iloc[0] is None  # round 0: random initial set, no model
        assert rounds["selected_entropy_histogram"].iloc[0] is None
        for _, row in rounds.iloc[1:].iterrows():
            pool, selected = np.asarray(row["pool_entropy_histogram"]), np.asarray(row["selected_entropy_histogram"])
            assert len(pool) == len(selected) == ENTROPY_BINS
            assert pool.sum() == 1077 - (row["labeled"] - 20)  # digits' whole pool before the selection
            assert selected.sum() == 20 and (selected <= pool).all()
            if row["acquisition"] == "entropy":  # the most uncertain samples: the top of the pool's histogram
                lowest = np.flatnonzero(selected)[0]
                assert (selected[lowest + 1 :] == pool[lowest + 1 :]).all()


@pytest.fixture(scope="module")
def trained_learner(tiny_study, digits):
    """A learner holding a model trained in the tiny study, and that run's labeled set."""
    run_dir = next(tiny_study.glob("runs/*"))
    model, config, state = load_checkpoint(run_dir)
    learner, _ = build_learner(config, digits)
    learner.load_state(state)
    return learner


def manual_entropies(learner, indices: np.ndarray) -> np.ndarray:
    """Entropies computed here: softmax of the model's logits, in batches of 1,000 as the loop's."""
    model = learner.model.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(indices), 1000):
            x = to_float(learner.images[torch.as_tensor(indices[start : start + 1000])])
            p = torch.softmax(model(x), dim=1).double()
            parts.append(-(p * torch.log(p.clamp_min(1e-12))).sum(dim=1).numpy())
    return np.concatenate(parts)


def counts(entropies: np.ndarray) -> list[int]:
    bins = np.linspace(0.0, math.log(10), ENTROPY_BINS + 1)
    return np.histogram(np.clip(entropies, 0.0, math.log(10)), bins=bins)[0].tolist()


def test_histograms_count_the_entropies_of_the_selecting_model(trained_learner):
    pool = trained_learner.pool_indices
    selected = pool[[3, 10, 500, 700, 701]]
    recorded = entropy_histograms(trained_learner, selected, 1)
    entropies = manual_entropies(trained_learner, np.concatenate([pool, selected]))
    assert recorded["pool_entropy_histogram"] == counts(entropies[: len(pool)])
    assert recorded["selected_entropy_histogram"] == counts(entropies[len(pool) :])
    assert len(set(np.flatnonzero(recorded["pool_entropy_histogram"]))) > 3  # a trained model: spread out


def test_a_large_pool_is_histogrammed_from_a_seeded_sample(trained_learner, monkeypatch):
    monkeypatch.setattr(loop, "ENTROPY_POOL_SAMPLE", 100)
    pool = trained_learner.pool_indices
    selected = pool[:4]
    first = entropy_histograms(trained_learner, selected, 2)
    assert sum(first["pool_entropy_histogram"]) == 100 and sum(first["selected_entropy_histogram"]) == 4
    assert entropy_histograms(trained_learner, selected, 2) == first  # same round, same sample
    sample = np.sort(numpy_rng(trained_learner.seed, "entropy-sample", 2).choice(pool, size=100, replace=False))
    entropies = manual_entropies(trained_learner, np.concatenate([sample, selected]))
    assert first["pool_entropy_histogram"] == counts(entropies[:100])


def test_a_run_recorded_before_the_histograms_existed_resumes_and_reports(tmp_path, digits):
    config = make_config(**tiny_settings(acquisition="entropy", epochs=1))
    reference = run_active_learning(config, dataset=digits)

    def stop_after_round_1(record):
        if record.round == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_active_learning(config, tmp_path, dataset=digits, on_round=stop_after_round_1)
    # make the files look like those of an older robustal: no histogram fields anywhere
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    for record in state["records"]:
        for name in HISTOGRAM_COLUMNS:
            del record[name]
    torch.save(state, tmp_path / CHECKPOINT_FILE)
    old_rounds = pd.read_parquet(tmp_path / ROUNDS_FILE).drop(columns=list(HISTOGRAM_COLUMNS))
    old_rounds.to_parquet(tmp_path / ROUNDS_FILE, index=False)
    assert entropy_distributions(old_rounds, ["dataset"]).empty  # the report shows none for such runs

    resumed = run_active_learning(config, tmp_path, dataset=digits)
    assert [r.pool_entropy_histogram is None for r in resumed.records] == [True, True, False]
    for name in HISTOGRAM_COLUMNS:  # the round run after resuming records what an uninterrupted run does
        assert getattr(resumed.records[2], name) == getattr(reference.records[2], name)
    stored = pd.read_parquet(tmp_path / ROUNDS_FILE)
    assert list(stored["labeled"]) == [30, 60, 90]
    assert list(stored["robust_accuracy"]) == [r.robust_accuracy for r in reference.records]
    assert list(stored["pool_entropy_histogram"].iloc[2]) == reference.records[2].pool_entropy_histogram
    assert len(entropy_distributions(stored.assign(function="entropy"), ["dataset"])) == 1
