"""ActiveLearner.relabel, ignore and unignore: corrections of real labelers, kept through a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from run_helpers import tiny_settings

from robustal.config import make_config
from robustal.errors import ConfigError
from robustal.loop import build_learner


@pytest.fixture
def learner(digits):
    built, _ = build_learner(make_config(**tiny_settings()), digits)
    built.teach(np.array([3, 1, 4]), np.array([0, 1, 2]))
    return built


def test_relabel_replaces_a_label_and_keeps_the_order(learner):
    learner.relabel(1, 7)
    assert learner.labels[1] == 7 and learner.labeled_indices.tolist() == [3, 1, 4]
    with pytest.raises(ConfigError, match="index 5 is not labeled; teach"):
        learner.relabel(5, 1)
    with pytest.raises(ConfigError, match="not classes of the model"):
        learner.relabel(3, 10)
    with pytest.raises(ConfigError, match="outside the pool"):
        learner.relabel(-1, 1)
    assert learner.labels[[3, 1, 4]].tolist() == [0, 7, 2]  # the refused calls changed nothing


def test_the_next_fit_trains_on_the_corrected_label(learner, monkeypatch):
    seen = {}

    def recording_fit(model, regime, data, *args, **kwargs):
        seen["labels"] = data.labels.tolist()
        return None

    monkeypatch.setattr("robustal.loop.fit", recording_fit)
    learner.relabel(4, 9)
    learner.ignore(1)
    learner.fit()
    assert seen["labels"] == [0, 9]  # index 3 then 4; the ignored index 1 is not trained on


def test_ignore_leaves_an_index_out_of_the_pool_and_teach_brings_it_back(learner):
    learner.ignore(1)  # labeled: the label is dropped
    learner.ignore(8)  # unlabeled: never queried
    assert learner.labels[1] == -1 and learner.labeled_indices.tolist() == [3, 4]
    assert 1 not in learner.pool_indices and 8 not in learner.pool_indices
    assert not np.isin(learner.query(len(learner.pool_indices)), [1, 8]).any()
    learner.teach(np.array([8]), np.array([5]))
    assert learner.labels[8] == 5 and not learner.ignored[8] and learner.labeled_indices.tolist() == [3, 4, 8]


def test_unignore_puts_indices_back_in_the_pool_unlabeled(learner):
    learner.ignore(1)
    learner.ignore(8)
    learner.unignore(np.array([1, 8, 9]))  # 9 was never ignored: unchanged
    assert not learner.ignored.any() and {1, 8, 9} <= set(learner.pool_indices.tolist())
    assert learner.labels[1] == -1 and learner.labeled_indices.tolist() == [3, 4]  # the dropped label stays dropped
    with pytest.raises(ConfigError, match="outside the pool"):
        learner.unignore(np.array([-1]))


def test_corrections_survive_a_checkpoint(learner, digits):
    learner.relabel(3, 6)
    learner.ignore(4)
    learner.ignore(20)
    state = learner.state()
    restored, _ = build_learner(make_config(**tiny_settings()), digits)
    restored.load_state(state)
    assert restored.labels[3] == 6 and restored.labeled_indices.tolist() == [3, 1]
    assert np.flatnonzero(restored.ignored).tolist() == [4, 20]
    old = {key: value for key, value in state.items() if key != "ignored"}  # a checkpoint from before ignore()
    restored.load_state(old)
    assert not restored.ignored.any() and isinstance(state["ignored"], torch.Tensor)
