"""The background trainer: a round trains on the labels, ranks the next batch with the acquisition
function (plus overflow ranks), warm-starts from the last checkpoint, follows relabels and skips,
stops at the budget, records failures, runs alone, and runs as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from label_helpers import CLASSES, true_label
from run_helpers import PROJECT

from robustal.acquisition.scoring import entropy
from robustal.errors import ConfigError
from robustal.label import trainer
from robustal.label.project import LabelProject, round_due
from robustal.loop import build_learner, read_checkpoint
from robustal.training import fit


@pytest.fixture
def entropy_project(tmp_path, digits_folder) -> LabelProject:
    folder, _ = digits_folder
    project = LabelProject.init(tmp_path / "p", folder, CLASSES, None, dict(PROJECT, acquisition="entropy"), validation=10)
    yield project
    project.close()


def label_open_items(project: LabelProject, truth: dict, annotator: str = "a", count: int | None = None) -> list[int]:
    """Label what `annotator` is served (all, or `count` items) with the true classes; the ids."""
    done = []
    while (count is None or len(done) < count) and (item := project.next_item(annotator)) is not None:
        project.label(item.id, true_label(project, item.id, truth), annotator)
        done.append(item.id)
    return done


def queue(project: LabelProject, round_number: int) -> list:
    return project.store.read("SELECT * FROM queue WHERE round = ? ORDER BY rank", (round_number,))


def test_a_round_trains_and_ranks_the_next_batch_by_entropy(entropy_project, digits_folder):
    project, (_, truth) = entropy_project, digits_folder
    label_open_items(project, truth, count=30)  # the validation set and the initial batch
    (summary,) = trainer.run_trainer(project)
    assert (summary.round, summary.labeled, summary.validation_labeled) == (0, 20, 10)
    assert [s.round for s in project.rounds()] == [0] and 0 <= summary.robust_accuracy <= summary.clean_accuracy <= 1

    state = read_checkpoint(project.checkpoint_path(0))  # safe loading: tensors only
    assert state["run_id"] == project.config.run_id() and state["rounds_trained"] == 1
    ranked = queue(project, 1)
    assert [row["overflow"] for row in ranked] == [0] * 10 + [1] * 10  # per_round 10, as many overflow ranks
    assert all(row["acquisition"] == "entropy" and row["model_version"] == 0 for row in ranked)
    scores = [row["score"] for row in ranked]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0

    # the ranking is the checkpoint's model's: the pool images of highest prediction entropy
    labels = trainer.read_labels(project)
    learner, _ = build_learner(project.config, trainer.dataset_of(project, labels))
    learner.load_state(state)
    pool = learner.pool_indices
    entropies = entropy(learner.probabilities(pool)).numpy()
    expected = labels.train_items[pool[np.argsort(-entropies, kind="stable")[:20]]]
    assert [row["item"] for row in ranked] == expected.tolist()

    served = project.next_item("a")
    assert (served.role, served.round, served.rank, served.id) == ("round", 1, 0, ranked[0]["item"])


def test_rounds_warm_start_follow_relabels_and_skips_and_stop_at_the_budget(project, digits_folder, monkeypatch):
    _, truth = digits_folder
    first_batch = label_open_items(project, truth, count=30)
    trainer.run_trainer(project)
    starts = []  # the weights each fit starts from

    def recording_fit(model, *args, **kwargs):
        starts.append({name: tensor.clone() for name, tensor in model.state_dict().items()})
        return fit(model, *args, **kwargs)

    monkeypatch.setattr("robustal.loop.fit", recording_fit)
    corrected = next(item for item in first_batch if project.item(item).role == "initial")
    project.label(corrected, (true_label(project, corrected, truth) + 1) % 10, "a")  # relabel a trained label
    skipped = project.next_item("a").id
    project.skip(skipped, "a")
    label_open_items(project, truth, count=9)
    assert project.progress().round_done == 10
    (summary,) = trainer.run_trainer(project)
    assert summary.round == 1 and summary.labeled == 29  # 20 + 9 (the skipped one is not trained on)

    state = read_checkpoint(project.checkpoint_path(1))
    labels = trainer.read_labels(project)
    index = {int(item): position for position, item in enumerate(labels.train_items)}
    assert state["rounds_trained"] == 2  # warm start: round 0's state plus one fit
    round_0 = read_checkpoint(project.checkpoint_path(0))["model"]
    assert starts[0].keys() == round_0.keys() and all(torch.equal(starts[0][name], round_0[name]) for name in round_0)
    assert int(state["labels"][index[corrected]]) == (true_label(project, corrected, truth) + 1) % 10
    assert bool(state["ignored"][index[skipped]]) and int(state["labels"][index[skipped]]) == -1

    label_open_items(project, truth, count=10)  # round 2: 10 more -> 39 trained + the skip: the budget of 40 is not reached
    trainer.run_trainer(project)
    progress = project.progress()
    assert progress.rounds_finished == 3 and not progress.finished
    label_open_items(project, truth, count=1)  # round 3 asks the one label left to the budget
    assert project.progress().round_size == 1
    trainer.run_trainer(project)
    progress = project.progress()
    assert progress.finished and progress.rounds_finished == 4 and project.rounds()[-1].labeled == 40
    assert project.next_item("a") is None and not project.maybe_start_training()


def test_overflow_ranks_are_served_while_the_next_round_trains(project, digits_folder):
    _, truth = digits_folder
    label_open_items(project, truth, count=30)
    trainer.run_trainer(project)
    label_open_items(project, truth, count=10)  # round 1's batch
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with project.store.write() as connection:  # a trainer runs (this live process holds the row)
            trainer.register_trainer(connection, sleeper.pid)
        assert project.progress().training and not project.maybe_start_training()
        overflow = project.next_item("a")
        assert (overflow.round, overflow.rank) == (1, 10)
        with pytest.raises(ConfigError, match=f"another trainer runs \\(pid {sleeper.pid}\\)"):
            trainer.run_trainer(project)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not project.progress().training  # a dead trainer's row does not count
    project.label(overflow.id, true_label(project, overflow.id, truth), "a")
    (summary,) = trainer.run_trainer(project)
    assert summary.labeled == 31  # the overflow label trained too


def test_a_trainer_row_whose_pid_now_names_a_later_process_does_not_count(project, digits_folder):
    _, truth = digits_folder
    label_open_items(project, truth, count=30)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with project.store.write() as connection:
            run = trainer.register_trainer(connection, sleeper.pid)
        assert project.progress().training  # written after the process started: it is the trainer
        with project.store.write() as connection:  # the row an hour older than the process: a reused pid
            connection.execute("UPDATE trainer_runs SET started_at = ? WHERE id = ?", ("2000-01-01T00:00:00.000+00:00", run))
        assert not project.progress().training
        (summary,) = trainer.run_trainer(project)  # another trainer may claim the project
        assert summary.round == 0
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_failed_round_is_reported_and_retried_after_a_new_label(project, digits_folder):
    _, truth = digits_folder
    while (item := project.next_item("a")) is not None:
        if project.item(item.id).role == "validation":
            project.skip(item.id, "a")  # every validation image skipped: no model selection possible
        else:
            project.label(item.id, true_label(project, item.id, truth), "a")
    with project.store.snapshot() as connection:
        assert round_due(connection)
    with pytest.raises(ConfigError, match="no validation image is labeled"):
        trainer.run_trainer(project)
    progress = project.progress()
    assert "round 0 failed: no validation image is labeled" in progress.training_error and not progress.training
    assert not project.maybe_start_training()  # it would fail again
    skipped = next(item for item in project.history("a", limit=100) if item.role == "validation")
    project.label(skipped.id, true_label(project, skipped.id, truth), "a")  # a skipped image labeled after all
    with project.store.snapshot() as connection:
        assert round_due(connection)
    trainer.run_trainer(project)
    assert project.progress().training_error is None and project.progress().rounds_finished == 1


def test_a_trainer_killed_before_its_transaction_trains_the_round_again(project, digits_folder, monkeypatch):
    _, truth = digits_folder
    label_open_items(project, truth, count=30)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # after the checkpoint was written, before the round's transaction

    monkeypatch.setattr(trainer, "finish_round", killed)
    with pytest.raises(KeyboardInterrupt):
        trainer.run_trainer(project)
    assert project.checkpoint_path(0).is_file() and project.rounds() == [] and queue(project, 1) == []
    monkeypatch.undo()
    (summary,) = trainer.run_trainer(project)
    assert summary.round == 0 and len(queue(project, 1)) == 20


def test_the_trainer_runs_as_a_background_process(project, digits_folder):
    _, truth = digits_folder
    label_open_items(project, truth, count=30)
    assert project.maybe_start_training()
    assert not project.maybe_start_training()  # one at a time
    deadline = time.monotonic() + 120
    while project.progress().rounds_finished == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert project.progress().rounds_finished == 1
    while project.progress().training and time.monotonic() < deadline:
        time.sleep(0.1)
    log = (project.path / "trainer.log").read_text()
    assert "round 0: 20 labeled training images" in log and "round 1 asks 10 (+10 overflow)" in log
    assert project.next_item("a").round == 1


def test_the_module_reports_bad_arguments(tmp_path, capsys):
    assert trainer.main([]) == 2
    assert trainer.main([str(tmp_path)]) == 2
    assert "is not a labeling project" in capsys.readouterr().err
