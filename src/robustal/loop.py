"""The active learning loop, and the query/teach API it is built on (usable for real labeling).

`ActiveLearner` holds a model, the unlabeled images and the labels known so far; `query(k)`
asks the acquisition function for `k` indices, `teach(indices, labels)` adds labels,
`relabel(i, y)` corrects one, `ignore(i)` leaves an image out, `fit()` trains (warm start from
the current weights, which are the previous round's best epoch).
`run_active_learning` simulates the labeler with the dataset's labels, round by round, and
resumes from its checkpoint when interrupted.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustal import __version__
from robustal.acquisition import AcquisitionFunction, PoolContext, build_acquisition
from robustal.acquisition.scoring import entropy, predict_probabilities
from robustal.attacks import PGD
from robustal.config import RunConfig
from robustal.data import ImageDataset, Split, load_dataset
from robustal.errors import ConfigError, DataError, PoolExhaustedError
from robustal.evaluation import Metrics, evaluate
from robustal.models import Classifier, build_model
from robustal.runtime import autocast, prepare_model, select_device
from robustal.seeding import derive_seed, numpy_rng, torch_generator
from robustal.training import FitResult, TrainingRegime, build_regime, fit, make_optimizer

ROUNDS_FILE = "rounds.parquet"
CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
ENTROPY_BINS = 20  # equal bins over [0, ln(classes)] of the entropy histograms of each round
ENTROPY_POOL_SAMPLE = 5000  # pool images whose entropies are histogrammed each round (a seeded sample)


@dataclass
class TrainingPlan:
    """How each round trains: regime, epochs, batches, optimizer, and the validation score."""

    regime: TrainingRegime
    score: Callable[[nn.Module], float]
    epochs: int = 10
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    retrain_from_scratch: bool = False
    precision: str = "fp32"
    augment: bool = False  # random crop + flip of training batches (SVHN, CIFAR-10 as the paper)
    # the first fit (the random initial set) with another regime and score: the paper's standard warm-up
    warm_up: TrainingRegime | None = None
    warm_up_score: Callable[[nn.Module], float] | None = None


class ActiveLearner:
    """Pool-based active learner over `images` (uint8, N x C x H x W); indices index `images`.

    Every random choice of round r is seeded from (seed, purpose, r), so a learner restored
    from a checkpoint at round r continues exactly as an uninterrupted one.
    """

    def __init__(
        self,
        model: Classifier,
        images: torch.Tensor,
        acquisition: AcquisitionFunction,
        plan: TrainingPlan,
        device: torch.device,
        seed: int = 0,
    ) -> None:
        self.model = model.to(device)
        self.images = images
        self.acquisition = acquisition
        self.plan = plan
        self.device = device
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
        with autocast(self.device, self.plan.precision):  # scoring forward passes at the run's precision
            return self.acquisition.select(self._context(), self.pool_indices, k, rng)

    def probabilities(self, indices: np.ndarray) -> torch.Tensor:
        """Softmax outputs (n, classes) of the current model on the images at `indices`: one
        clean forward pass in batches, at the run's precision."""
        with autocast(self.device, self.plan.precision):
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

    def fit(self) -> FitResult:
        """Train on the labeled set; keeps the best epoch and counts a round. The first round
        trains with the plan's `warm_up` regime when it has one."""
        if len(self.labeled_indices) == 0:
            raise PoolExhaustedError("nothing is labeled yet: teach() some labels before fit()")
        plan = self.plan
        if plan.retrain_from_scratch:
            self.model.load_state_dict(self._initial_state)
        index = torch.as_tensor(self.labeled_indices)
        data = Split(self.images[index], torch.as_tensor(self.labels[self.labeled_indices]))
        warming_up = self.rounds_trained == 0 and plan.warm_up is not None
        result = fit(
            self.model,
            plan.warm_up if warming_up else plan.regime,
            data,
            plan.warm_up_score if warming_up else plan.score,
            self.device,
            epochs=plan.epochs,
            batch_size=plan.batch_size,
            optimizer=make_optimizer(plan.optimizer, self.model, plan.lr, plan.weight_decay),
            shuffle_generator=torch_generator(self.seed, "shuffle", self.rounds_trained),
            attack_generator=torch_generator(self.seed, "train-attack", self.rounds_trained, device=self.device),
            lr_schedule=plan.lr_schedule,
            precision=plan.precision,
            augment_generator=torch_generator(self.seed, "augment", self.rounds_trained) if plan.augment else None,
        )
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


def records_frame(config: RunConfig, records: list[RoundRecord]):
    """One row per round: identity columns (dataset, model, ...) then the record's fields."""
    import pandas as pd

    identity = {
        "run_id": config.run_id(),
        "dataset": config.dataset,
        "model": config.model_name,
        "acquisition": config.acquisition,
        "training": config.training,
        "seed": config.seed,
    }
    return pd.DataFrame([{**identity, **asdict(record)} for record in records])


def build_learner(config: RunConfig, dataset: ImageDataset) -> tuple[ActiveLearner, PGD]:
    """The learner of `config` on `dataset`, and the evaluation attack (PGD, eval settings)."""
    device = select_device(config.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "init"))
        model = build_model(config.model_name, dataset.channels, dataset.num_classes, dataset.image_size)
    prepare_model(model.to(device), config.channels_last, config.compile)
    speed = {"fold_batchnorm": config.fold_batchnorm, "cuda_graphs": config.cuda_graphs}
    train_attack = PGD(config.eps, config.step_size, config.train_steps, True, **speed)
    eval_attack = PGD(config.eps, config.step_size, config.eval_steps, True, **speed)
    regime = build_regime(config.training, train_attack)
    validation = dataset.validation.subset(slice(0, config.validation_size))

    def validation_score(adversarial: bool) -> Callable[[nn.Module], float]:
        # the paper's rule: best epoch by validation robustness (adversarial) or accuracy (standard);
        # the same attack starts every time, so a resumed run scores exactly as an uninterrupted one
        def score(model: nn.Module) -> float:
            attack = eval_attack if adversarial else None
            generator = torch_generator(config.seed, "validation-attack", device=device)
            metrics = evaluate(model, validation, device, attack, generator, precision=config.precision)
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
        precision=config.precision,
        augment=config.uses_augmentation,
    )
    acquisition = build_acquisition(config.acquisition, **config.acquisition_options)
    return ActiveLearner(model, dataset.train.images, acquisition, plan, device, config.seed), eval_attack


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` by `write(temporary)` then a rename, so readers never see a partial file.

    The temporary name is unique (process id and a random token), so that two writers of the
    same path never write into each other's temporary file; it is removed if `write` fails.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def versions() -> dict[str, str]:
    """Versions of robustal and the libraries that determine numbers."""
    return {"robustal": __version__, "torch": torch.__version__, "numpy": np.__version__}


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
        if records:
            # the checkpoint holds every finished round: rewrite them, so a damaged rounds.parquet is repaired
            frame = records_frame(config, records)
            atomic_write(out / ROUNDS_FILE, lambda p: frame.to_parquet(p, index=False))
        if records and on_resume is not None:
            on_resume(records)
        payload = {"run_id": config.run_id(), "config": config.model_dump(), "versions": versions()}
        atomic_write(out / CONFIG_FILE, lambda p: p.write_text(json.dumps(payload, indent=2)))

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
        metrics: Metrics = evaluate(
            learner.model, test, learner.device, eval_attack, eval_generator, precision=config.precision
        )
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
    frame = records_frame(config, records)
    atomic_write(out / ROUNDS_FILE, lambda p: frame.to_parquet(p, index=False))
    state = {**learner.state(), "run_id": config.run_id(), "records": [asdict(r) for r in records]}
    atomic_write(out / CHECKPOINT_FILE, lambda p: torch.save(state, p))
    if config.keep_round_checkpoints:  # this round's model stays available (robustal evaluate --round)
        kept = out / round_checkpoint_name(len(records) - 1)
        atomic_write(kept, lambda p: shutil.copyfile(out / CHECKPOINT_FILE, p))  # serialised once


def round_checkpoint_name(round_number: int) -> str:
    """The file name of round `round_number`'s checkpoint, kept with ``keep_round_checkpoints``."""
    return f"checkpoint-round-{round_number:02d}.pt"


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
    if state["run_id"] != config.run_id():
        raise ConfigError(
            f"{out} holds run {state['run_id']}, not this configuration ({config.run_id()}); "
            "choose another --out or delete it"
        )
    learner.load_state(state)
    return [RoundRecord(**record) for record in state["records"]]


def read_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """The settings of the run at `run_dir`, from its ``config.json``; a `DataError` naming the
    file when it is missing, damaged or holds settings this version rejects."""
    config_file = Path(run_dir) / CONFIG_FILE
    try:
        return RunConfig(**json.loads(config_file.read_text())["config"])
    except Exception as error:  # missing, not JSON, or settings this version rejects
        raise DataError(f"cannot read the run settings {config_file}: {error}") from None


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
    config = read_run_config(checkpoint.parent)
    if state["run_id"] != config.run_id():
        raise DataError(f"{checkpoint} holds run {state['run_id']}, but {config_file} describes run {config.run_id()}")
    try:
        model = build_model(**state["model_spec"])
        model.load_state_dict(state["model"])
    except Exception as error:
        raise DataError(f"{checkpoint} does not hold a model robustal can rebuild: {error}") from None
    return model.to(device), config, state
