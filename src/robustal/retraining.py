"""Test selection for retraining: label a few new inputs and fine-tune a trained model on them.

The paper's fourth use of DRE: a model was trained on the training set; from a pool of new,
unlabeled inputs an acquisition function picks `budget` of them, they are labeled and added to
the model's training data, and the model is fine-tuned with adversarial training to raise its
robustness. Each budget is a separate fine-tune from the same starting checkpoint.

The splits are fixed (independent of the seed) and disjoint by construction:

- **retraining data**: the model's own training data, ``dataset.train[state["labeled_indices"]]``
  of its checkpoint, followed by the selected candidates with their labels;
- **candidate pool**: the first ``round(candidate_fraction * len(dataset.test))`` images of the
  dataset's test split (default fraction 0.5);
- **evaluation split**: the rest of the test split (optionally only its first
  ``evaluation_size`` images): clean and robust accuracy before and after retraining;
- **validation split**: ``dataset.validation`` (its first ``validation_size`` images), for the
  best epoch, exactly as in the active learning loop.

Retraining is active learning on a derived dataset (`retraining_dataset`) whose training
images are the model's training data followed by the candidate pool: the training data is the
labeled set, the candidates are the pool. Acquisition functions therefore see the training data
as already labeled (k-center measures distances to it); selections are reported as
**positions in the candidate pool** (``selected``; ``candidate_indices[selected]`` are the
indices into ``dataset.test``).

>>> from robustal.retraining import make_retrain_config, run_retraining
>>> config = make_retrain_config(checkpoint="runs/mnist-standard", acquisition="dre", budgets="1%,2%,5%")
>>> table = run_retraining(config, out_dir="runs/retrain-dre")          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from robustal.acquisition import check_acquisition_name, identity_options
from robustal.attacks import Attack
from robustal.config import MAX_BATCH_SIZE, MAX_REPEATS, RunConfig, check_pixel_range, make_config, validation_message
from robustal.data import ImageDataset, Split, load_dataset
from robustal.errors import ConfigError, DataError, unknown_name_error
from robustal.evaluation import Metrics, evaluate
from robustal.loop import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    ActiveLearner,
    atomic_write,
    build_learner,
    load_checkpoint,
    versions,
)
from robustal.seeding import derive_seed, torch_generator
from robustal.training import TRAINING_REGIMES

RESULTS_FILE = "results.parquet"

# Settings that say where or how fast retraining happens, or which budgets are wanted: not part
# of the id (every budget's row is determined by the id and the budget, so budgets can be added
# to a finished run directory later).
NON_IDENTITY_FIELDS = ("budgets", "data_root", "device")

# Fine-tuning settings that default (None) to the starting checkpoint's run config.
INHERITED_FIELDS = ("epochs", "batch_size", "lr", "eps", "step_size", "train_steps", "eval_steps", "validation_size")


def normalize_budget(item: int | str) -> str:
    """A budget as canonical text: a positive count (``"100"``) or a percentage of the candidate
    pool in (0, 100] (``"2.5%"``); anything else raises `ConfigError`."""
    text = str(item).strip()
    if isinstance(item, bool) or not text:
        raise ConfigError(f"budget {item!r} is neither a count (100) nor a percentage of the candidate pool ('5%')")
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            raise ConfigError(f"budget {item!r} is not a percentage like '5%'") from None
        if not 0 < percent <= 100:
            raise ConfigError(f"budget {item!r}: a percentage of the candidate pool must be in (0%, 100%]")
        return f"{percent:g}%"
    try:
        count = int(text)
    except ValueError:
        raise ConfigError(f"budget {item!r} is neither a count (100) nor a percentage of the candidate pool ('5%')") from None
    if count < 1:
        raise ConfigError(f"budget {item!r} must be at least 1 sample")
    return str(count)


def resolve_budgets(budgets: list[int | str] | tuple[int | str, ...], pool_size: int) -> list[int]:
    """Sample counts of `budgets` (counts or percentages of `pool_size`), ascending, without repeats.

    A percentage is rounded to the nearest count (halves up). Raises `ConfigError` for a
    budget that is below one sample or larger than the pool.
    """
    counts = []
    for item in budgets:
        text = normalize_budget(item)
        if text.endswith("%"):
            count = math.floor(pool_size * float(text[:-1]) / 100 + 0.5)
            if count < 1:
                raise ConfigError(
                    f"budget {text} of {pool_size} candidates is less than one sample; use a larger percentage or a count"
                )
        else:
            count = int(text)
        if count > pool_size:
            raise ConfigError(f"budget {item} exceeds the {pool_size} candidates; lower it or raise candidate_fraction")
        counts.append(count)
    return sorted(set(counts))


class RetrainConfig(BaseModel):
    """One retraining run: starting checkpoint, acquisition function, budgets, fine-tuning, seed.

    Training settings left at None are the checkpoint's run config (epochs, batch size, lr,
    attack radius and steps, validation size); `training` defaults to PGD adversarial training
    whatever regime the checkpoint was trained with.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # as RunConfig

    checkpoint: str = Field(description="run directory (or its checkpoint.pt) written by `robustal run --out`")
    dataset: str | None = Field(None, description="must be the checkpoint's dataset; None = the checkpoint's")
    acquisition: str = "dre"
    acquisition_options: dict[str, Any] = Field(default_factory=dict)
    budgets: tuple[str, ...] = Field(description="counts ('100') or percentages of the candidate pool ('5%')")
    candidate_fraction: float = Field(0.5, gt=0, lt=1, description="share of the test split that is the candidate pool")
    evaluation_size: int | None = Field(None, ge=1, description="evaluation samples used; None = all")
    training: str = "pgd"
    epochs: int | None = Field(None, ge=1, le=MAX_REPEATS)
    batch_size: int | None = Field(None, ge=1, le=MAX_BATCH_SIZE)
    lr: float | None = Field(None, gt=0)
    eps: float | None = Field(None, ge=0)
    step_size: float | None = Field(None, gt=0)
    train_steps: int | None = Field(None, ge=1, le=MAX_REPEATS)
    eval_steps: int | None = Field(None, ge=1, le=MAX_REPEATS)
    validation_size: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    data_root: str | None = None

    _pixel_range = field_validator("eps", "step_size")(check_pixel_range)

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _run_directory(cls, value: Any) -> str:
        # "runs/a" and "runs/a/checkpoint.pt" name the same checkpoint (and get the same id)
        path = Path(value)
        return str(path.parent if path.name == CHECKPOINT_FILE else path)

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value)
        if not items:
            raise ConfigError("give at least one budget, e.g. '100,200,500' or '1%,2%,5%'")
        return tuple(normalize_budget(item) for item in items)

    @model_validator(mode="after")
    def _check(self) -> "RetrainConfig":
        check_acquisition_name(self.acquisition)
        if self.training not in TRAINING_REGIMES:
            raise unknown_name_error("training regime", self.training, TRAINING_REGIMES)
        return self

    def identity(self) -> dict[str, Any]:
        """The settings that determine every budget's results (no budgets, paths of data or devices)."""
        values = self.model_dump(exclude=set(NON_IDENTITY_FIELDS))
        values["acquisition_options"] = identity_options(self.acquisition, self.acquisition_options)
        return {"kind": "retrain", **values}

    def run_id(self) -> str:
        """A stable 16-hex-digit id of `identity()`: the same retraining always gets the same id."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_retrain_config(**settings: Any) -> RetrainConfig:
    """Build a `RetrainConfig`, turning validation failures into one readable `ConfigError`."""
    try:
        return RetrainConfig(**settings)
    except ValidationError as error:
        raise ConfigError("invalid retraining settings: " + validation_message(error)) from None


@dataclass(frozen=True)
class RetrainingSplit:
    """The index sets of retraining (see the module docstring); disjoint by construction.

    ``labeled_indices`` index ``dataset.train`` (the model's training data, in the checkpoint's
    labeling order); ``candidate_indices`` and ``evaluation_indices`` index ``dataset.test``.
    """

    labeled_indices: np.ndarray
    candidate_indices: np.ndarray
    evaluation_indices: np.ndarray

    def retraining_sources(self, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where the retraining data of candidate-pool positions `selected` comes from:
        (indices into ``dataset.train``, indices into ``dataset.test``)."""
        return self.labeled_indices, self.candidate_indices[np.asarray(selected, dtype=np.int64)]


def split_for_retraining(
    test_size: int, labeled_indices: np.ndarray, candidate_fraction: float = 0.5, evaluation_size: int | None = None
) -> RetrainingSplit:
    """Candidate pool = the first ``round(candidate_fraction * test_size)`` test indices,
    evaluation = the rest (its first `evaluation_size`), retraining data = `labeled_indices`."""
    candidates = math.floor(candidate_fraction * test_size + 0.5)
    if not 0 < candidates < test_size:
        raise ConfigError(
            f"candidate_fraction {candidate_fraction} of {test_size} test samples leaves the candidate pool or the "
            "evaluation split empty; choose a fraction strictly between them"
        )
    labeled = np.asarray(labeled_indices, dtype=np.int64)
    if len(np.unique(labeled)) != len(labeled):
        raise DataError("the checkpoint's labeled indices contain duplicates; it is not a robustal run checkpoint")
    evaluation = np.arange(candidates, test_size, dtype=np.int64)[slice(0, evaluation_size)]
    return RetrainingSplit(labeled, np.arange(candidates, dtype=np.int64), evaluation)


def retraining_dataset(dataset: ImageDataset, split: RetrainingSplit) -> ImageDataset:
    """Retraining as an active-learning dataset: ``train`` = the model's training data (positions
    ``0 .. n_labeled - 1``) followed by the candidate pool (position ``n_labeled + i`` is
    candidate ``i``), ``validation`` = the validation split, ``test`` = the evaluation split."""
    labeled = dataset.train.subset(torch.as_tensor(split.labeled_indices))
    candidates = dataset.test.subset(torch.as_tensor(split.candidate_indices))
    train = Split(torch.cat([labeled.images, candidates.images]), torch.cat([labeled.labels, candidates.labels]))
    return ImageDataset(
        name=f"{dataset.name}-retraining",
        train=train,
        validation=dataset.validation,
        test=dataset.test.subset(torch.as_tensor(split.evaluation_indices)),
        num_classes=dataset.num_classes,
    )


@dataclass
class BudgetRecord:
    """One budget's fine-tune: metrics on the evaluation split before and after, and timings.

    ``selected`` are positions in the candidate pool (see `RetrainingSplit.retraining_sources`).
    """

    budget: int
    candidates: int
    labeled_before: int
    selected_count: int
    clean_accuracy_before: float
    robust_accuracy_before: float
    clean_accuracy_after: float
    robust_accuracy_after: float
    clean_gain: float
    robust_gain: float
    validation_score: float
    best_epoch: int
    select_seconds: float
    train_seconds: float
    eval_seconds: float
    seconds: float
    selected: list[int] = field(repr=False)


@dataclass
class RetrainingProblem:
    """Everything the budgets of one retraining run share: the loaded checkpoint and the splits."""

    config: RetrainConfig
    source_config: RunConfig
    source_run_id: str
    start_state: dict
    split: RetrainingSplit
    dataset: ImageDataset  # see `retraining_dataset`

    @property
    def labeled_count(self) -> int:
        return len(self.split.labeled_indices)

    @property
    def pool_size(self) -> int:
        return len(self.split.candidate_indices)

    def budgets(self) -> list[int]:
        """The config's budgets as sample counts of this candidate pool."""
        return resolve_budgets(self.config.budgets, self.pool_size)

    def run_config(self, *purpose: str | int) -> RunConfig:
        """The checkpoint's run config with the fine-tuning settings, seeded from (seed, purpose)."""
        overrides = {name: getattr(self.config, name) for name in INHERITED_FIELDS if getattr(self.config, name) is not None}
        settings = {
            **self.source_config.model_dump(),
            **overrides,
            "acquisition": self.config.acquisition,
            "acquisition_options": self.config.acquisition_options,
            "training": self.config.training,
            "warm_up": "same",  # a fine-tune is one fit with the retraining regime, never a warm-up
            "retrain_from_scratch": False,
            "seed": derive_seed(self.config.seed, *purpose),
            "device": self.config.device,
        }
        return make_config(**settings)

    def start_learner(self, *purpose: str | int) -> tuple[ActiveLearner, Attack]:
        """A learner holding the starting model, its training data labeled and the candidates as
        the pool, and the evaluation attack; seeded from (seed, purpose)."""
        learner, eval_attack = build_learner(self.run_config(*purpose), self.dataset)
        learner.model.load_state_dict(self.start_state)
        labeled = np.arange(self.labeled_count, dtype=np.int64)
        learner.teach(labeled, self.dataset.train.labels[:self.labeled_count].numpy())
        return learner, eval_attack

    def evaluate(self, learner: ActiveLearner, attack: Attack) -> Metrics:
        """Clean and robust accuracy of `learner`'s model on the evaluation split, at its run's
        precision; the attack's random start is the same for every call (so before and after
        are measured on the same draws)."""
        generator = torch_generator(self.config.seed, "retrain-evaluation-attack", device=learner.device)
        return evaluate(learner.model, self.dataset.test, learner.execution, attack, generator)


def checkpoint_path(config: RetrainConfig, root: str | os.PathLike | None = None) -> Path:
    """Where the checkpoint of `config` is: a relative ``config.checkpoint`` is read from `root`
    (default: the working directory)."""
    path = Path(config.checkpoint)
    return path if root is None or path.is_absolute() else Path(root) / path


def load_problem(
    config: RetrainConfig, dataset: ImageDataset | None = None, root: str | os.PathLike | None = None
) -> RetrainingProblem:
    """Load the checkpoint (see `checkpoint_path` for `root`) and the dataset of `config` and build the splits."""
    _, source_config, state = load_checkpoint(checkpoint_path(config, root))
    name = config.dataset or source_config.dataset
    if name != source_config.dataset:
        raise ConfigError(
            f"the checkpoint was trained on {source_config.dataset!r}, not {name!r}: retraining adds samples to the "
            f"model's own training data, so leave --dataset out or pass {source_config.dataset!r}"
        )
    if dataset is None:
        dataset = load_dataset(name, config.data_root or source_config.data_root, source_config.image_size)
    labeled_indices = state["labeled_indices"].numpy()
    split = split_for_retraining(len(dataset.test), labeled_indices, config.candidate_fraction, config.evaluation_size)
    _check_training_data(dataset, split.labeled_indices, state["labels"].numpy())
    problem = RetrainingProblem(
        config=config,
        source_config=source_config,
        source_run_id=str(state.get("run_id", source_config.run_id())),
        start_state=state["model"],
        split=split,
        dataset=retraining_dataset(dataset, split),
    )
    problem.budgets()  # budgets larger than the pool fail before any compute
    return problem


def _check_training_data(dataset: ImageDataset, labeled_indices: np.ndarray, checkpoint_labels: np.ndarray) -> None:
    # the checkpoint's labels must be the dataset's: otherwise the model was trained on other data
    if len(labeled_indices) and int(labeled_indices.max()) >= len(dataset.train):
        raise DataError(f"the checkpoint's labeled indices exceed the {len(dataset.train)} training samples of {dataset.name}")
    dataset_labels = dataset.train.labels[torch.as_tensor(labeled_indices)].numpy()
    if not np.array_equal(checkpoint_labels[labeled_indices], dataset_labels):
        raise DataError(
            f"the checkpoint's labels differ from those of the training split of {dataset.name}: the model was trained on "
            "other data; pass the --data-root it was trained with"
        )


def retrain_budget(problem: RetrainingProblem, budget: int, before: Metrics) -> tuple[BudgetRecord, ActiveLearner]:
    """Select `budget` candidates, label them, fine-tune the starting model on its training data
    plus them, and evaluate; seeded from (seed, "retrain", budget). Returns the record and the learner."""
    start = time.perf_counter()
    learner, eval_attack = problem.start_learner("retrain", budget)
    start_select = time.perf_counter()
    chosen = learner.query(budget)
    learner.teach(chosen, problem.dataset.train.labels[torch.as_tensor(chosen)].numpy())
    select_seconds = time.perf_counter() - start_select
    result = learner.fit()
    start_eval = time.perf_counter()
    after = problem.evaluate(learner, eval_attack)
    eval_seconds = time.perf_counter() - start_eval
    record = BudgetRecord(
        budget=budget,
        candidates=problem.pool_size,
        labeled_before=problem.labeled_count,
        selected_count=len(chosen),
        clean_accuracy_before=before.clean_accuracy,
        robust_accuracy_before=before.robust_accuracy,
        clean_accuracy_after=after.clean_accuracy,
        robust_accuracy_after=after.robust_accuracy,
        clean_gain=after.clean_accuracy - before.clean_accuracy,
        robust_gain=after.robust_accuracy - before.robust_accuracy,
        validation_score=result.best_score,
        best_epoch=result.best_epoch,
        select_seconds=select_seconds,
        train_seconds=result.seconds,
        eval_seconds=eval_seconds,
        seconds=time.perf_counter() - start,
        selected=[int(i) - problem.labeled_count for i in chosen],
    )
    return record, learner


def records_frame(problem: RetrainingProblem, records: list[BudgetRecord]) -> pd.DataFrame:
    """One row per budget: identity columns (run id, source run, dataset, ...) then the record's fields."""
    config = problem.config
    identity = {
        "run_id": config.run_id(),
        "source_run_id": problem.source_run_id,
        "dataset": problem.source_config.dataset,
        "model": problem.source_config.model_name,
        "acquisition": config.acquisition,
        "training": config.training,
        "seed": config.seed,
    }
    return pd.DataFrame([{**identity, **asdict(record)} for record in records])


def run_retraining(
    config: RetrainConfig,
    out_dir: str | os.PathLike | None = None,
    dataset: ImageDataset | None = None,
    on_budget: Callable[[BudgetRecord], None] | None = None,
    root: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Retrain the checkpoint of `config` once per budget; one row per budget (ascending).

    With `out_dir`, writes ``config.json`` and ``results.parquet`` (atomically, after every
    budget) and skips the budgets already in ``results.parquet``: an interrupted run resumes,
    and budgets can be added to a finished one. A directory of another configuration or another
    starting checkpoint is refused. A relative ``config.checkpoint`` is read from `root` (a study
    directory keeps ``runs/<run id>`` there, so the id does not depend on where the study is).
    """
    problem = load_problem(config, dataset, root)
    out = Path(out_dir) if out_dir is not None else None
    done: dict[int, BudgetRecord] = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        done = _resume(out, problem)
        payload = {
            "kind": "retrain",
            "run_id": config.run_id(),
            "source_run_id": problem.source_run_id,
            "config": config.model_dump(),
            "versions": versions(),
        }
        atomic_write(out / CONFIG_FILE, lambda p: p.write_text(json.dumps(payload, indent=2)))

    todo = [budget for budget in problem.budgets() if budget not in done]
    if todo:
        if done:  # the starting model's metrics were measured once, with the first budget
            first = next(iter(done.values()))
            before = Metrics(first.clean_accuracy_before, first.robust_accuracy_before)
        else:
            learner, eval_attack = problem.start_learner("retrain-start")
            before = problem.evaluate(learner, eval_attack)
        for budget in todo:
            record, _ = retrain_budget(problem, budget, before)
            done[budget] = record
            if out is not None:
                frame = records_frame(problem, [done[key] for key in sorted(done)])
                atomic_write(out / RESULTS_FILE, lambda p: frame.to_parquet(p, index=False))
            if on_budget is not None:
                on_budget(record)
    return records_frame(problem, [done[budget] for budget in problem.budgets()])


def _resume(out: Path, problem: RetrainingProblem) -> dict[int, BudgetRecord]:
    stored = out / CONFIG_FILE
    if not stored.exists():
        return {}
    payload = json.loads(stored.read_text())
    if payload.get("run_id") != problem.config.run_id() or payload.get("source_run_id") != problem.source_run_id:
        raise ConfigError(
            f"{out} holds retraining run {payload.get('run_id')} of checkpoint run {payload.get('source_run_id')}, not "
            f"this configuration ({problem.config.run_id()} of {problem.source_run_id}); choose another --out or delete it"
        )
    if not (out / RESULTS_FILE).exists():
        return {}
    names = [name for name in BudgetRecord.__dataclass_fields__]
    try:
        rows = pd.read_parquet(out / RESULTS_FILE)[names].to_dict("records")
    except Exception as error:  # noqa: BLE001 - damaged or not ours: keep it aside, compute the budgets again
        damaged = out / (RESULTS_FILE + ".damaged")
        os.replace(out / RESULTS_FILE, damaged)
        warnings.warn(f"cannot read {out / RESULTS_FILE} ({error}); moved it to {damaged}, computing every budget again", stacklevel=2)
        return {}
    records = {}
    for row in rows:
        row["selected"] = [int(i) for i in row["selected"]]
        record = BudgetRecord(**row)
        records[int(record.budget)] = record
    return records
