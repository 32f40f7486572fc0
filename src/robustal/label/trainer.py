"""A labeling project's training rounds, run in the background: ``python -m robustal.label.trainer PROJECT``.

`LabelProject.maybe_start_training` starts this module as a separate process (its output goes
to ``PROJECT/trainer.log``) when the current round's batch is labeled; the labeling page keeps
serving meanwhile. One round:

1. reads the labels from the store (validation items -> the validation split; every other
   item is the training pool, labeled or not);
2. builds the `ActiveLearner` of the project's `RunConfig` (`robustal.loop.build_learner`) and
   loads the previous round's checkpoint (warm start: weights, labels, rounds trained); then
   brings its labels up to date: new labels are taught, corrected ones relabeled
   (`ActiveLearner.relabel`), skipped images ignored (`ActiveLearner.ignore`);
3. trains (`fit`: adversarially per the settings, the warm-up regime in round 0, best epoch by
   validation robustness), evaluates clean and robust (PGD) accuracy on the labeled validation
   items;
4. ranks the next batch with the acquisition function, `per_round` items plus as many overflow
   ranks (served while the following round trains), up to the budget;
5. writes ``rounds/checkpoint-NN.pt`` atomically, then the round's row and the next queue in
   one transaction.

A row in the store's ``trainer`` table (the pid) makes sure only one trainer runs; one killed
midway leaves no round row, and the next start trains the round again. When the new batch
is already labeled (annotators labeled overflow items meanwhile), the next round follows at once.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass

import numpy as np
import torch

from robustal.acquisition.baseline import RandomSampling
from robustal.data import ImageDataset, Split
from robustal.errors import ConfigError, DataError, RobustALError
from robustal.evaluation import evaluate
from robustal.label.project import (
    LabelProject,
    RoundSummary,
    _current_round,
    live_trainer,
    register_trainer,
    round_due,
)
from robustal.label.store import last_event_id, now
from robustal.loop import ActiveLearner, build_learner, read_checkpoint
from robustal.rundir import atomic_write
from robustal.seeding import torch_generator


@dataclass
class Labels:
    """The store's labels at the start of a round, in the learner's index order."""

    round: int
    last_event: int
    train_items: np.ndarray  # item ids of the training pool (the learner's indices), ascending
    train_rows: np.ndarray  # their rows in the image array
    train_labels: np.ndarray  # -1: unlabeled
    train_skipped: np.ndarray  # bool
    validation_rows: np.ndarray  # rows of the labeled validation items
    validation_labels: np.ndarray
    validation_total: int


def log(message: str) -> None:
    print(f"{now()}  {message}", flush=True)


def claim(project: LabelProject) -> int:
    """Become the project's trainer (its row in the store); the id of this run. `ConfigError`
    when another trainer runs. A row written by `maybe_start_training` for this pid is ours."""
    pid = os.getpid()
    with project.store.write() as connection:
        row = connection.execute("SELECT pid, run FROM trainer").fetchone()
        if row is not None and row["pid"] == pid:
            return int(row["run"])
        if (other := live_trainer(connection)) is not None:
            raise ConfigError(f"{project.path}: another trainer runs (pid {other['pid']}); wait for it to finish")
        return register_trainer(connection, pid)


def release(project: LabelProject, run: int, error: str | None = None) -> None:
    """Give up the trainer row; record a failure's message for the labeling page."""
    with project.store.write() as connection:
        connection.execute("DELETE FROM trainer WHERE pid = ?", (os.getpid(),))
        if error is not None:
            connection.execute(
                "UPDATE trainer_runs SET status = 'failed', message = ?, finished_at = ? WHERE id = ?", (error, now(), run)
            )


def read_labels(project: LabelProject) -> Labels:
    """The labels of every item now, from one snapshot of the store."""
    with project.store.snapshot() as connection:
        rows = connection.execute("SELECT id, row, role, label, skipped FROM items ORDER BY id").fetchall()
        current, last = _current_round(connection), last_event_id(connection)
    ids = np.array([row["id"] for row in rows], dtype=np.int64)
    image_rows = np.array([row["row"] for row in rows], dtype=np.int64)
    labels = np.array([-1 if row["label"] is None else row["label"] for row in rows], dtype=np.int64)
    skipped = np.array([bool(row["skipped"]) for row in rows])
    validation = np.array([row["role"] == "validation" for row in rows])
    train, checked = ~validation, validation & (labels >= 0)
    return Labels(
        current, last, ids[train], image_rows[train], labels[train], skipped[train],
        image_rows[checked], labels[checked], int(validation.sum()),
    )  # fmt: skip


def dataset_of(project: LabelProject, labels: Labels) -> ImageDataset:
    """The project's images as a dataset: train = the pool (labels of unlabeled items are
    placeholders, the learner only sees what it is taught), validation = test = the labeled
    validation items."""
    if not len(labels.validation_labels):
        raise ConfigError(
            f"no validation image is labeled (of {labels.validation_total}; skipped ones do not count): "
            "robust model selection needs labeled validation images; undo a skip of one and label it"
        )
    if not (labels.train_labels >= 0).any():
        raise ConfigError("no training image is labeled yet: label the initial batch first")
    images = project.images
    train = Split(torch.from_numpy(images[labels.train_rows]), torch.from_numpy(np.maximum(labels.train_labels, 0)))
    validation = Split(torch.from_numpy(images[labels.validation_rows]), torch.from_numpy(labels.validation_labels))
    return ImageDataset(project.config.dataset, train, validation, validation, len(project.classes))


def sync_labels(learner: ActiveLearner, labels: Labels) -> dict[str, int]:
    """Bring the learner's labels (from the previous checkpoint) to the store's: teach new labels,
    relabel changed ones, ignore skipped images and labels taken back by an undo; the counts."""
    counts = {"taught": 0, "relabeled": 0, "ignored": 0}
    wanted, known = labels.train_labels, learner.labels
    for index in np.flatnonzero((wanted >= 0) & (known >= 0) & (wanted != known)):
        learner.relabel(int(index), int(wanted[index]))
        counts["relabeled"] += 1
    # skipped, or labeled before and not now (undone): not trained on
    for index in np.flatnonzero((labels.train_skipped | (known >= 0)) & (wanted < 0) & ~learner.ignored):
        learner.ignore(int(index))
        counts["ignored"] += 1
    learner.unignore(np.flatnonzero(learner.ignored & (wanted < 0) & ~labels.train_skipped))  # an undone skip
    new = np.flatnonzero((wanted >= 0) & (known < 0))
    if len(new):
        learner.teach(new, wanted[new])
        counts["taught"] = len(new)
    return counts


def restore(project: LabelProject, learner: ActiveLearner) -> int | None:
    """Load the latest finished round's checkpoint into `learner`; that round, or None."""
    rows = project.store.read("SELECT round, checkpoint FROM rounds ORDER BY round DESC LIMIT 1")
    if not rows:
        return None
    checkpoint = project.path / rows[0]["checkpoint"]
    state = read_checkpoint(checkpoint, learner.device)
    if state["run_id"] != project.config.run_id():
        raise DataError(f"{checkpoint} holds run {state['run_id']}, not this project's ({project.config.run_id()})")
    if len(state["labels"]) != len(learner.labels):
        raise DataError(f"{checkpoint} has {len(state['labels'])} training images, the project {len(learner.labels)}")
    learner.load_state(state)
    return int(rows[0]["round"])


def rank_next(project: LabelProject, learner: ActiveLearner) -> tuple[np.ndarray, int]:
    """The learner's indices ranked for the next round (the batch first, then overflow ranks)
    and the batch size: `per_round` (up to the budget and the pool), overflow as many again."""
    config = project.config
    pool = len(learner.pool_indices)
    batch = max(0, min(config.per_round, config.budget - len(learner.labeled_indices), pool))
    if batch == 0:
        return np.empty(0, dtype=np.int64), 0
    overflow = min(int(project.meta.get("overflow", config.per_round)), pool - batch)
    return learner.query(batch + overflow), batch


def train_round(project: LabelProject, run: int) -> RoundSummary:
    """Train the current round of `project` (steps: see the module doc); its summary."""
    config, start = project.config, time.perf_counter()
    labels = read_labels(project)
    dataset = dataset_of(project, labels)
    learner, eval_attack = build_learner(config, dataset)
    previous = restore(project, learner)
    counts = sync_labels(learner, labels)
    log(
        f"round {labels.round}: {len(learner.labeled_indices)} labeled training images ({counts['taught']} new, "
        f"{counts['relabeled']} relabeled, {counts['ignored']} ignored), {len(dataset.validation)} validation; "
        + ("fresh model" if previous is None else f"warm start from round {previous}")
    )
    result = learner.fit()
    generator = torch_generator(config.seed, "label-validation-attack", labels.round, device=learner.device)
    metrics = evaluate(learner.model, dataset.validation, learner.execution, eval_attack, generator)
    ranked, batch = rank_next(project, learner)
    checkpoint = project.checkpoint_path(labels.round)
    state = {**learner.state(), "run_id": config.run_id(), "round": labels.round}
    atomic_write(checkpoint, lambda path: torch.save(state, path))
    summary = RoundSummary(
        round=labels.round, labeled=len(learner.labeled_indices), clean_accuracy=metrics.clean_accuracy,
        robust_accuracy=metrics.robust_accuracy, finished_at=now(), validation_labeled=len(dataset.validation),
    )  # fmt: skip
    score = not isinstance(learner.acquisition, RandomSampling)
    finish_round(project, run, summary, result.best_epoch, time.perf_counter() - start, labels, ranked, batch, score)
    log(
        f"round {labels.round} done in {time.perf_counter() - start:.1f}s: best epoch {result.best_epoch}, validation "
        f"accuracy {100 * metrics.clean_accuracy:.1f}%, robust {100 * metrics.robust_accuracy:.1f}%; "
        + (f"round {labels.round + 1} asks {batch} (+{len(ranked) - batch} overflow)" if batch else "budget labeled")
    )
    return summary


def finish_round(
    project: LabelProject,
    run: int,
    summary: RoundSummary,
    best_epoch: int,
    seconds: float,
    labels: Labels,
    ranked: np.ndarray,
    batch: int,
    score: bool,
) -> None:
    """In one transaction: the round's row and the next round's queue (ranked items: the first
    `batch` asked, the rest overflow; scores from the rank when the function is not random)."""
    acquisition = project.config.acquisition
    next_round = summary.round + 1
    with project.store.write() as connection:
        connection.execute(
            "INSERT INTO rounds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                summary.round, summary.labeled, summary.validation_labeled, summary.clean_accuracy,
                summary.robust_accuracy, best_epoch, seconds,
                project.checkpoint_path(summary.round).relative_to(project.path).as_posix(),
                labels.last_event, summary.finished_at,
            ),
        )  # fmt: skip
        connection.executemany(
            "INSERT INTO queue (round, rank, item, role, score, acquisition, model_version, overflow) "
            "VALUES (?, ?, ?, 'round', ?, ?, ?, ?)",
            [
                (next_round, rank, int(labels.train_items[index]), 1.0 - rank / len(ranked) if score else None,
                 acquisition, summary.round, int(rank >= batch))
                for rank, index in enumerate(ranked)
            ],
        )  # fmt: skip
        connection.execute("UPDATE trainer_runs SET status = 'finished', finished_at = ? WHERE id = ?", (now(), run))


def run_trainer(project: LabelProject) -> list[RoundSummary]:
    """Train every round that is due (usually one), as the project's only trainer."""
    run = claim(project)
    summaries = []
    try:
        while True:
            summaries.append(train_round(project, run))
            with project.store.write() as connection:
                if not round_due(connection):
                    break
                run = register_trainer(connection, os.getpid())
    except BaseException as error:
        reason = f"{type(error).__name__}: {error}" if not isinstance(error, RobustALError) else str(error)
        release(project, run, f"round {_round_of(project)} failed: {reason}")
        raise
    release(project, run)
    return summaries


def _round_of(project: LabelProject) -> int:
    with project.store.snapshot() as connection:
        return _current_round(connection)


def main(argv: list[str] | None = None) -> int:
    """``python -m robustal.label.trainer PROJECT``: train the due rounds; 0 on success, 1 on
    failure (the message is in the log and shown on the labeling page), 2 on bad arguments."""
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        print("usage: python -m robustal.label.trainer PROJECT", file=sys.stderr)
        return 2
    try:
        project = LabelProject.open(arguments[0])
    except RobustALError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        run_trainer(project)
    except RobustALError as error:
        log(f"error: {error}")
        return 1
    except Exception:  # noqa: BLE001 - logged in full for the user, summarised on the page
        log("error:\n" + traceback.format_exc())
        return 1
    finally:
        project.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
