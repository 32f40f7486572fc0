"""The active learning loop, and the query/teach API it is built on (usable for real labeling).

`ActiveLearner` holds a model, the unlabeled images and the labels known so far; `query(k)`
asks the acquisition function for `k` indices, `teach(indices, labels)` adds labels,
`relabel(i, y)` corrects one, `ignore(i)` leaves an image out, `fit()` trains (warm start from
the current weights, which are the previous round's best epoch).
`run_active_learning` simulates the labeler with the dataset's labels, round by round, and
resumes from its checkpoint when interrupted.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from robustal.accel import Execution
from robustal.acquisition import AcquisitionFunction, PoolContext, build_acquisition
from robustal.acquisition.scoring import entropy, predict_probabilities
from robustal.attacks import PGD
from robustal.config import RunConfig
from robustal.data import ImageDataset, Split, load_dataset
from robustal.errors import ConfigError, DataError, PoolExhaustedError
from robustal.evaluation import Metrics, evaluate
from robustal.models import Classifier, build_model
from robustal.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    ROUNDS_FILE,
    RecordFile,
    atomic_write,
    read_config,
    round_checkpoint_name,
    set_aside_evaluations,
    write_config,
)
from robustal.seeding import derive_seed, numpy_rng, torch_generator
from robustal.training import FitResult, TrainingPlan, build_regime, fit

ENTROPY_BINS = 20  # equal bins over [0, ln(classes)] of the entropy histograms of each round
ENTROPY_POOL_SAMPLE = 5000  # pool images whose entropies are histogrammed each round (a seeded sample)


class ActiveLearner:
    """Pool-based active learner over `images` (uint8, N x C x H x W); indices index `images`.

    `execution` (`robustal.accel.Execution`, or a device for fp32 eager there) is how training,
    selection and evaluation run. Every random choice of round r is seeded from (seed, purpose, r), so a learner restored
    from a checkpoint at round r continues exactly as an uninterrupted one.
    """

    def __init__(
        self,
        model: Classifier,
        images: torch.Tensor,
        acquisition: AcquisitionFunction,
        plan: TrainingPlan,
        execution: Execution | torch.device,
        seed: int = 0,
    ) -> None:
        self.execution = Execution.of(execution)
        self.device = self.execution.device
        self.model = model.to(self.device)
        self.images = images
        self.acquisition = acquisition
        self.plan = plan
        self.seed = seed
        self.labels = np.full(len(images), -1, dtype=np.int64)
        self.labeled_indices = np.empty(0, dtype=np.int64)
        self.ignored = np.zeros(len(images), dtype=bool)  # neither in the pool nor trained on (ignore())
        self.rounds_trained = 0
        self._initial_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @property
    def pool_indices(self) -> np.ndarray:
        """Unlabeled indices that are not ignored, ascending."""
        return np.flatnonzero((self.labels < 0) & ~self.ignored)

    def query(self, k: int) -> np.ndarray:
        """The `k` pool indices the acquisition function picks for the next round."""
        rng = numpy_rng(self.seed, "select", self.rounds_trained)
        with self.execution.context():  # scoring passes (and attacks) at the run's precision
            return self.acquisition.select(self._context(), self.pool_indices, k, rng)

    def probabilities(self, indices: np.ndarray) -> torch.Tensor:
        """Softmax outputs (n, classes) of the current model on the images at `indices`: one
        clean forward pass in batches, at the run's precision."""
        with self.execution.context():
            return predict_probabilities(self._context(), indices)

    def _context(self) -> PoolContext:
        return PoolContext(self.model, self.images, self.labeled_indices, self.device)

    def teach(self, indices: np.ndarray, labels: np.ndarray) -> None:
        """Record `labels` for `indices` (each index is labeled once).

        Indices must be unlabeled positions in `images` and labels classes of the model
        (0 .. classes - 1); anything else raises `ConfigError` and leaves the learner unchanged
        (everything is checked before anything is recorded). An ignored index may be taught: it
        is no longer ignored (an annotator labeled an image they had skipped).
        """
        indices, labels = np.asarray(indices), np.asarray(labels)
        if indices.ndim != 1 or indices.shape != labels.shape:
            raise ConfigError(f"{indices.size} indices but {labels.size} labels (give two 1-D arrays of one length)")
        for name, values in (("indices", indices), ("labels", labels)):
            if values.size and not np.issubdtype(values.dtype, np.integer):
                raise ConfigError(f"{name} must be integers, got {values.dtype}")
        indices, labels = indices.astype(np.int64), labels.astype(np.int64)
        # a negative index would silently label a sample from the end of the pool
        outside = indices[(indices < 0) | (indices >= len(self.images))]
        if outside.size:
            raise ConfigError(f"indices {outside[:5].tolist()} are outside the pool (0..{len(self.images) - 1})")
        if len(np.unique(indices)) != len(indices) or (self.labels[indices] >= 0).any():
            raise ConfigError("an index is labeled twice; query() only returns unlabeled indices")
        self._check_classes(labels)
        self.labels[indices] = labels
        self.labeled_indices = np.concatenate([self.labeled_indices, indices])
        self.ignored[indices] = False

    def _check_classes(self, labels: np.ndarray) -> None:
        classes = self.model.head.out_features
        unknown = labels[(labels < 0) | (labels >= classes)]
        if unknown.size:
            raise ConfigError(f"labels {unknown[:5].tolist()} are not classes of the model (0..{classes - 1})")

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.images):
            raise ConfigError(f"index {index!r} is outside the pool (0..{len(self.images) - 1})")
        return int(index)

    def relabel(self, index: int, label: int) -> None:
        """Replace the label of labeled `index` with `label` (an annotator corrected it); the next
        `fit` trains on the new label. `ConfigError` when `index` is not labeled or `label` is not
        a class of the model."""
        index = self._check_index(index)
        if self.labels[index] < 0:
            raise ConfigError(f"index {index} is not labeled; teach() it instead")
        self._check_classes(np.array([label], dtype=np.int64))
        self.labels[index] = int(label)

    def ignore(self, index: int) -> None:
        """Leave `index` out: it is no longer queried and, if it was labeled, its label is
        dropped (it is not trained on), e.g. an image an annotator skipped as unusable.
        `teach` brings it back."""
        index = self._check_index(index)
        if self.labels[index] >= 0:
            self.labels[index] = -1
            self.labeled_indices = self.labeled_indices[self.labeled_indices != index]
        self.ignored[index] = True

    def unignore(self, indices: np.ndarray) -> None:
        """Put ignored `indices` back in the pool, unlabeled (e.g. an annotator took a skip back);
        indices that are not ignored stay as they are."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        for index in indices:
            self._check_index(int(index))
        self.ignored[indices] = False

    def fit(self) -> FitResult:
        """Train on the labeled set (`robustal.training.fit`: the first round with the plan's
        `warm_up` regime when it has one); keeps the best epoch and counts a round."""
        if len(self.labeled_indices) == 0:
            raise PoolExhaustedError("nothing is labeled yet: teach() some labels before fit()")
        plan = self.plan
        if plan.retrain_from_scratch:
            self.model.load_state_dict(self._initial_state)
        index = torch.as_tensor(self.labeled_indices)
        data = Split(self.images[index], torch.as_tensor(self.labels[self.labeled_indices]))
        result = fit(self.model, plan, data, self.execution, self.seed, self.rounds_trained)
        self.rounds_trained += 1
        return result

    def state(self) -> dict:
        """Everything needed to resume: weights, labels, labeled order, rounds trained."""
        return {
            "model": self.model.state_dict(),
            "model_spec": self.model.spec,
            "labels": torch.from_numpy(self.labels),
            "labeled_indices": torch.from_numpy(self.labeled_indices),
            "rounds_trained": self.rounds_trained,
            "ignored": torch.from_numpy(self.ignored),
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.labels = state["labels"].numpy().copy()
        self.labeled_indices = state["labeled_indices"].numpy().copy()
        self.rounds_trained = int(state["rounds_trained"])
        # checkpoints from before ignore() existed ignore nothing
        self.ignored = state["ignored"].numpy().copy() if "ignored" in state else np.zeros(len(self.labels), dtype=bool)


@dataclass
class RoundRecord:
    """Metrics and timings of one round (round 0 trains on the random initial set)."""

    round: int
    labeled: int
    clean_accuracy: float
    robust_accuracy: float
    validation_score: float
    best_epoch: int
    train_seconds: float
    select_seconds: float
    eval_seconds: float
    selected: list[int] = field(repr=False)
    validation_seconds: float = 0.0  # the part of train_seconds spent scoring epochs on validation
    # prediction entropies of the model that selected, counted in ENTROPY_BINS equal bins over
    # [0, ln(classes)]: of the pool (see `entropy_histograms`) and of the selected samples; None
    # in round 0 (the random initial set, no model yet) and in runs from before they were recorded
    pool_entropy_histogram: list[int] | None = field(default=None, repr=False)
    selected_entropy_histogram: list[int] | None = field(default=None, repr=False)


@dataclass
class RunResult:
    """A finished run: its config, one record per round, and the trained learner."""

    config: RunConfig
    records: list[RoundRecord]
    learner: ActiveLearner

    def table(self):
        """The records as a pandas DataFrame (one row per round, with the run's identity)."""
        return records_frame(self.config, self.records)

    def summary(self) -> dict[str, Any]:
        """What ``done.json`` of a finished run says: rounds, final metrics, seconds."""
        last = self.records[-1]
        return {
            "run_id": self.config.run_id(),
            "rounds": len(self.records),
            "labeled": last.labeled,
            "clean_accuracy": last.clean_accuracy,
            "robust_accuracy": last.robust_accuracy,
            "seconds": sum(r.train_seconds + r.select_seconds + r.eval_seconds for r in self.records),
        }


ROUNDS = RecordFile(ROUNDS_FILE, RoundRecord)  # one row per finished round of a run


def run_identity(config: RunConfig) -> dict[str, Any]:
    """The columns that lead every row of a run's records: its id and what a table groups by."""
    return {
        "run_id": config.run_id(),
        "dataset": config.dataset,
        "model": config.model_name,
        "acquisition": config.acquisition,
        "training": config.training,
        "seed": config.seed,
    }


def records_frame(config: RunConfig, records: list[RoundRecord]):
    """One row per round: identity columns (dataset, model, ...) then the record's fields."""
    return ROUNDS.frame(run_identity(config), records)


def build_learner(config: RunConfig, dataset: ImageDataset) -> tuple[ActiveLearner, PGD]:
    """The learner of `config` on `dataset`, and the evaluation attack (PGD, eval settings)."""
    execution = Execution.from_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "init"))
        model = build_model(config.model_name, dataset.channels, dataset.num_classes, dataset.image_size)
    execution.prepare(model)
    device = execution.device
    train_attack = PGD(config.eps, config.step_size, config.train_steps, True, config.norm)
    eval_attack = PGD(config.eps, config.step_size, config.eval_steps, True, config.norm)
    regime = build_regime(config.training, train_attack, config.trades_beta)
    validation = dataset.validation.subset(slice(0, config.validation_size))

    def validation_score(adversarial: bool) -> Callable[[nn.Module], float]:
        # the paper's rule: best epoch by validation robustness (adversarial) or accuracy (standard);
        # the same attack starts every time, so a resumed run scores exactly as an uninterrupted one
        def score(model: nn.Module) -> float:
            attack = eval_attack if adversarial else None
            generator = torch_generator(config.seed, "validation-attack", device=device)
            metrics = evaluate(model, validation, execution, attack, generator)
            return metrics.robust_accuracy if adversarial else metrics.clean_accuracy

        return score

    warm_up = config.warm_up == "standard" and regime.adversarial
    plan = TrainingPlan(
        regime=regime,
        score=validation_score(regime.adversarial),
        warm_up=build_regime("standard", train_attack) if warm_up else None,
        warm_up_score=validation_score(False) if warm_up else None,
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=config.optimizer,
        lr=config.lr,
        weight_decay=config.weight_decay,
        lr_schedule=config.lr_schedule,
        retrain_from_scratch=config.retrain_from_scratch,
        augment=config.uses_augmentation,
    )
    acquisition = build_acquisition(config.acquisition, **config.acquisition_options)
    return ActiveLearner(model, dataset.train.images, acquisition, plan, execution, config.seed), eval_attack


def run_active_learning(
    config: RunConfig,
    out_dir: str | os.PathLike | None = None,
    dataset: ImageDataset | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
    on_resume: Callable[[list[RoundRecord]], None] | None = None,
) -> RunResult:
    """Run the robust (or standard) active learning loop of `config` until the budget.

    With `out_dir`, writes ``config.json``, ``rounds.parquet`` and ``checkpoint.pt`` after every
    round (atomically), and resumes from ``checkpoint.pt`` if a previous run was interrupted.
    `on_resume` gets the records restored from it (before any new round), `on_round` each new record.
    """
    dataset = dataset or load_dataset(config.dataset, config.data_root, config.image_size)
    if config.budget > len(dataset.train):
        raise ConfigError(f"budget {config.budget} exceeds the {len(dataset.train)} training samples of {config.dataset}")
    learner, eval_attack = build_learner(config, dataset)
    test = dataset.test.subset(slice(0, config.test_size))
    records: list[RoundRecord] = []

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        records = _resume(out, config, learner)
        if not records:  # a first round: evaluations in the directory attacked an earlier computation's model
            set_aside_evaluations(out)
        if records:
            # the checkpoint holds every finished round: rewrite them, so a damaged rounds.parquet is repaired
            ROUNDS.write(out, run_identity(config), records)
        if records and on_resume is not None:
            on_resume(records)
        write_config(out, ActiveLearningJob.kind, config.run_id(), config)

    while True:
        labeled = len(learner.labeled_indices)
        if records and labeled >= config.budget:
            break
        start = time.perf_counter()
        if not records:
            selected = numpy_rng(config.seed, "initial").choice(len(dataset.train), size=config.initial, replace=False)
        else:
            selected = learner.query(min(config.per_round, config.budget - labeled))
        select_seconds = time.perf_counter() - start
        histograms = entropy_histograms(learner, selected, len(records)) if records else {}
        learner.teach(selected, dataset.train.labels[torch.as_tensor(selected)].numpy())
        result = learner.fit()
        start = time.perf_counter()
        eval_generator = torch_generator(config.seed, "test-attack", len(records), device=learner.device)
        metrics: Metrics = evaluate(learner.model, test, learner.execution, eval_attack, eval_generator)
        record = RoundRecord(
            round=len(records),
            labeled=len(learner.labeled_indices),
            clean_accuracy=metrics.clean_accuracy,
            robust_accuracy=metrics.robust_accuracy,
            validation_score=result.best_score,
            best_epoch=result.best_epoch,
            train_seconds=result.seconds,
            select_seconds=select_seconds,
            eval_seconds=time.perf_counter() - start,
            selected=[int(i) for i in selected],
            validation_seconds=result.score_seconds,
            **histograms,
        )
        records.append(record)
        if out is not None:
            _save_round(out, config, learner, records)
        if on_round is not None:
            on_round(record)
    return RunResult(config, records, learner)


def entropy_histogram(entropies: np.ndarray, num_classes: int, bins: int = ENTROPY_BINS) -> list[int]:
    """Counts of `entropies` (nats) in `bins` equal bins over [0, ln(num_classes)], the range of
    a prediction's entropy (values a rounding error outside it count in the first or last bin)."""
    upper = math.log(num_classes)
    return np.histogram(np.clip(entropies, 0.0, upper), bins=bins, range=(0.0, upper))[0].tolist()


def entropy_histograms(learner: ActiveLearner, selected: np.ndarray, round_number: int) -> dict[str, list[int]]:
    """The entropy fields of the `RoundRecord` of round `round_number`: histograms of the prediction
    entropies of the learner's pool (a seeded sample of at most `ENTROPY_POOL_SAMPLE` images: a histogram
    needs no more; a pass over 50,000 MNIST images takes seconds on a CPU) and of the `selected` images.

    Called right after `selected` was chosen and before it is taught, with the model that
    selected (selecting leaves the model unchanged), so the pool still holds `selected`.
    """
    sample = pool = learner.pool_indices
    if len(pool) > ENTROPY_POOL_SAMPLE:
        rng = numpy_rng(learner.seed, "entropy-sample", round_number)
        sample = np.sort(rng.choice(pool, size=ENTROPY_POOL_SAMPLE, replace=False))
    probabilities = learner.probabilities(np.concatenate([sample, selected]))  # one clean forward pass
    entropies, classes = entropy(probabilities).numpy(), probabilities.shape[1]
    return {
        "pool_entropy_histogram": entropy_histogram(entropies[: len(sample)], classes),
        "selected_entropy_histogram": entropy_histogram(entropies[len(sample) :], classes),
    }


def _save_round(out: Path, config: RunConfig, learner: ActiveLearner, records: list[RoundRecord]) -> None:
    # rounds first, checkpoint last: a checkpoint always has its rounds on disk
    ROUNDS.write(out, run_identity(config), records)
    state = {**learner.state(), "run_id": config.run_id(), "records": [asdict(r) for r in records]}
    atomic_write(out / CHECKPOINT_FILE, lambda p: torch.save(state, p))
    if config.keep_round_checkpoints:  # this round's model stays available (robustal evaluate --round)
        kept = out / round_checkpoint_name(len(records) - 1)
        atomic_write(kept, lambda p: shutil.copyfile(out / CHECKPOINT_FILE, p))  # serialised once


def read_checkpoint(checkpoint: Path, device: str | torch.device = "cpu") -> dict:
    """The state saved in `checkpoint`, loaded without running any code from the file.

    Checkpoints travel between people (retraining starts from someone else's run), so they load
    with ``weights_only=True``: tensors, numbers, strings and containers only, never a pickled
    object whose unpickling could execute code. Any failure (damaged, truncated, not a
    checkpoint, refused by the safe loader) becomes a `DataError` naming the file.
    """
    try:
        state = torch.load(checkpoint, map_location=device, weights_only=True)
    except Exception as error:  # any decoding failure of an untrusted file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot read checkpoint {checkpoint}: {reason}") from None
    if not isinstance(state, dict) or not isinstance(state.get("run_id"), str):
        raise DataError(f"{checkpoint} is not a robustal checkpoint (no run id)")
    return state


def _resume(out: Path, config: RunConfig, learner: ActiveLearner) -> list[RoundRecord]:
    checkpoint = out / CHECKPOINT_FILE
    if not checkpoint.exists():
        return []
    try:
        state = read_checkpoint(checkpoint, learner.device)
    except DataError as error:
        # keep the damaged file for inspection and start the run over rather than fail every retry
        damaged = checkpoint.with_name(CHECKPOINT_FILE + ".damaged")
        os.replace(checkpoint, damaged)
        warnings.warn(f"{error}; moved it to {damaged} and starting this run from scratch", stacklevel=2)
        return []
    if state["run_id"] != config.run_id() and not _same_settings_earlier_id(out, state["run_id"], config):
        raise ConfigError(
            f"{out} holds run {state['run_id']}, not this configuration ({config.run_id()}); "
            "choose another --out or delete it"
        )
    if state["run_id"] != config.run_id():  # from here on the checkpoint carries the current id
        state["run_id"] = config.run_id()
        atomic_write(checkpoint, lambda p: torch.save(state, p))
    learner.load_state(state)
    return [RoundRecord(**record) for record in state["records"]]


def _same_settings_earlier_id(out: Path, run_id: str, config: RunConfig) -> bool:
    """Whether `out` holds run `run_id` with the settings of `config` under the id an earlier
    version gave them (from 0.2 on, ids leave out settings at their defaults): such a run
    resumes, and its files take the current id as they are rewritten."""
    try:
        payload = read_config(out)
        return payload.get("run_id") == run_id and _run_config(out, payload).identity() == config.identity()
    except Exception:  # no readable settings beside the checkpoint: not provably the same run
        return False


def read_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """The settings of the run at `run_dir`, from its ``config.json``; a `DataError` naming the
    file when it is missing, damaged or holds settings this version rejects."""
    return _run_config(Path(run_dir), read_config(Path(run_dir)))


def _run_config(run_dir: Path, payload: dict) -> RunConfig:
    try:
        return RunConfig(**payload["config"])
    except Exception as error:  # settings this version rejects
        raise DataError(f"cannot read the run settings {run_dir / CONFIG_FILE}: {error}") from None


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple[Classifier, RunConfig, dict]:
    """The trained model, the config and the raw state of a run directory or its ``checkpoint.pt``.

    The checkpoint loads safely (`read_checkpoint`) and must hold the run that the ``config.json``
    beside it describes; anything else is a `DataError` naming the file.
    """
    path = Path(path)
    checkpoint = path / CHECKPOINT_FILE if path.is_dir() else path
    if not checkpoint.is_file():
        raise ConfigError(f"no checkpoint at {checkpoint}: pass a run directory written by `robustal run --out`")
    state = read_checkpoint(checkpoint, device)
    config_file = checkpoint.parent / CONFIG_FILE
    payload = read_config(checkpoint.parent)
    config = _run_config(checkpoint.parent, payload)
    # the id config.json recorded: runs written by earlier versions keep their earlier ids
    if state["run_id"] not in (config.run_id(), payload.get("run_id")):
        raise DataError(f"{checkpoint} holds run {state['run_id']}, but {config_file} describes run {config.run_id()}")
    try:
        model = build_model(**state["model_spec"])
        model.load_state_dict(state["model"])
    except Exception as error:
        raise DataError(f"{checkpoint} does not hold a model robustal can rebuild: {error}") from None
    return model.to(device), config, state


@dataclass(frozen=True)
class ActiveLearningJob:
    """An active-learning run as a job (`robustal.rundir.Job`): its steps are rounds."""

    kind: ClassVar[str] = "run"
    records: ClassVar[RecordFile] = ROUNDS
    config: RunConfig

    @property
    def job_id(self) -> str:
        return self.config.run_id()

    @property
    def steps(self) -> int:
        return self.config.rounds + 1

    def is_done(self, job_dir: Path) -> bool:
        return True  # a finished run has every round of its settings (they are its id)

    def run(self, job_dir: Path, root: Path | None = None) -> dict[str, Any]:
        return run_active_learning(self.config, job_dir).summary()

    def rebuild_records(self, job_dir: Path) -> bool:
        checkpoint = job_dir / CHECKPOINT_FILE
        if not checkpoint.exists():
            return False
        try:
            state = read_checkpoint(checkpoint)
        except DataError:  # the run starts over: the loop sets the damaged checkpoint aside
            return False
        if state["run_id"] != self.config.run_id():
            return False
        ROUNDS.write(job_dir, run_identity(self.config), [RoundRecord(**record) for record in state["records"]])
        return True
