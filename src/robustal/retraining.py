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

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from robustal.acquisition import check_acquisition_name, identity_options
from robustal.attacks import Attack
from robustal.config import RunConfig, make_config, stable_id, validation_message, without_defaults
from robustal.data import ImageDataset, Split, load_dataset
from robustal.errors import ConfigError, DataError, unknown_name_error
from robustal.evaluation import Metrics, evaluate
from robustal.loop import ActiveLearner, build_learner, load_checkpoint
from robustal.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    DONE_FILE,
    RESULTS_FILE,
    RecordFile,
    read_config,
    read_json,
    write_config,
)
from robustal.seeding import derive_seed, torch_generator
from robustal.training import TRAINING_REGIMES

# Settings that say where or how fast retraining happens, or which budgets are wanted: not part
# of the id (every budget's row is determined by the id and the budget, so budgets can be added
# to a finished run directory later).
NON_IDENTITY_FIELDS = ("budgets", "data_root", "device")

# The checkpoint's run settings that a fine-tune may change (`RetrainConfig.updates`); the others
# (dataset, model, image size, ...) are the trained model's and stay as they are.
FINE_TUNING_FIELDS = (
    "epochs", "batch_size", "optimizer", "lr", "weight_decay", "lr_schedule", "trades_beta", "norm", "eps", "step_size", "train_steps",
    "eval_steps", "validation_size", "augment", "precision", "channels_last", "fold_batchnorm", "compile", "cuda_graphs",
)  # fmt: skip


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
    """One retraining run: starting checkpoint, acquisition function, budgets, seed, and the
    fine-tuning settings as an update of the checkpoint's `RunConfig`.

    `updates` holds the `FINE_TUNING_FIELDS` that differ from the checkpoint's run (validated as
    `RunConfig` validates them); every other setting is the checkpoint's. They may also be given
    by name (``epochs=5``, ``--epochs 5``, ``retrain.settings: {epochs: 5}``): a fine-tuning
    setting given as None means the checkpoint's. `training` defaults to PGD adversarial training
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
    updates: dict[str, Any] = Field(
        default_factory=dict, description="fine-tuning settings that differ from the checkpoint's run (RunConfig names)"
    )
    seed: int = Field(0, ge=0)
    device: str = "auto"
    data_root: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _collect_updates(cls, values: Any) -> Any:
        # fine-tuning settings given by name join `updates` (None: the checkpoint's, no update);
        # each is validated as a run's setting, and errors name it as `RunConfig` would
        if not isinstance(values, dict):
            return values
        named = {name: values[name] for name in FINE_TUNING_FIELDS if name in values}
        rest = {name: value for name, value in values.items() if name not in named}
        updates = {**(rest.get("updates") or {}), **{name: value for name, value in named.items() if value is not None}}
        unknown = sorted(set(updates) - set(FINE_TUNING_FIELDS))
        if unknown:
            raise ValueError(f"{', '.join(unknown)} cannot change in a fine-tune; these can: {', '.join(FINE_TUNING_FIELDS)}")
        try:
            RunConfig(**updates)
        except ValidationError as error:
            raise ValueError(validation_message(error)) from None
        return {**rest, "updates": updates}

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

    def resolved_settings(self) -> dict[str, Any]:
        """The settings that determine every budget's results (no budgets, paths of data or
        devices), the acquisition function's options resolved: what a study's manifest records."""
        values = self.model_dump(exclude=set(NON_IDENTITY_FIELDS))
        values["acquisition_options"] = identity_options(self.acquisition, self.acquisition_options)
        return {"kind": "retrain", **values}

    def identity(self) -> dict[str, Any]:
        """What the id is computed from: `resolved_settings` without those at their defaults (as
        `RunConfig.identity`)."""
        return without_defaults(self.resolved_settings(), type(self))

    def run_id(self) -> str:
        """A stable 16-hex-digit id of `identity()`: the same retraining always gets the same id."""
        return stable_id(self.identity())


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
        settings = {
            **self.source_config.model_dump(),
            **self.config.updates,
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


RESULTS = RecordFile(RESULTS_FILE, BudgetRecord)  # one row per finished budget of a retraining job


def retraining_identity(problem: RetrainingProblem) -> dict[str, Any]:
    """The columns that lead every row of a retraining job's records (run id, source run, dataset, ...)."""
    config = problem.config
    return {
        "run_id": config.run_id(),
        "source_run_id": problem.source_run_id,
        "dataset": problem.source_config.dataset,
        "model": problem.source_config.model_name,
        "acquisition": config.acquisition,
        "training": config.training,
        "seed": config.seed,
    }


def records_frame(problem: RetrainingProblem, records: list[BudgetRecord]) -> pd.DataFrame:
    """One row per budget: identity columns (run id, source run, dataset, ...) then the record's fields."""
    return RESULTS.frame(retraining_identity(problem), records)


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
        write_config(out, RetrainingJob.kind, config.run_id(), config, source_run_id=problem.source_run_id)

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
                RESULTS.write(out, retraining_identity(problem), [done[key] for key in sorted(done)])
            if on_budget is not None:
                on_budget(record)
    return records_frame(problem, [done[budget] for budget in problem.budgets()])


def _resume(out: Path, problem: RetrainingProblem) -> dict[int, BudgetRecord]:
    if not (out / CONFIG_FILE).exists():
        return {}
    payload = read_config(out)
    if payload.get("run_id") != problem.config.run_id() or payload.get("source_run_id") != problem.source_run_id:
        raise ConfigError(
            f"{out} holds retraining run {payload.get('run_id')} of checkpoint run {payload.get('source_run_id')}, not "
            f"this configuration ({problem.config.run_id()} of {problem.source_run_id}); choose another --out or delete it"
        )
    try:
        records = RESULTS.read(out)
    except DataError as error:  # damaged or not ours: keep it aside, compute the budgets again
        RESULTS.set_aside(out, f"{error}; computing every budget again")
        return {}
    return {int(record.budget): record for record in records}


def retraining_summary(config: RetrainConfig, results: pd.DataFrame) -> dict[str, Any]:
    """What ``done.json`` of a finished retraining job says: its budgets (as in the config, which
    `RetrainingJob.is_done` compares with later specs'), sample counts, robustness gains, seconds."""
    return {
        "run_id": config.run_id(),
        "source_run_id": str(results["source_run_id"].iloc[0]),
        "budgets": list(config.budgets),
        "budget_counts": [int(budget) for budget in results["budget"]],
        "robust_gain": [float(gain) for gain in results["robust_gain"]],
        "seconds": float(results["seconds"].sum()),
    }


def finished_budgets(job_dir: Path) -> set[str]:
    """The budgets (normalized texts) of the finished retraining job in `job_dir`, from its ``done.json``."""
    return set(read_json(job_dir / DONE_FILE).get("budgets", ()))


@dataclass(frozen=True)
class RetrainingJob:
    """A retraining run as a job (`robustal.rundir.Job`): its steps are budgets. A relative
    checkpoint path is read from the `root` given to `run` (a study's directory)."""

    kind: ClassVar[str] = "retrain"
    records: ClassVar[RecordFile] = RESULTS
    config: RetrainConfig

    @property
    def job_id(self) -> str:
        return self.config.run_id()

    @property
    def steps(self) -> int:
        return len(set(self.config.budgets))

    def is_done(self, job_dir: Path) -> bool:
        # budgets can be added to a finished job: it is done when it has every budget asked for now
        return set(self.config.budgets) <= finished_budgets(job_dir)

    def run(self, job_dir: Path, root: Path | None = None) -> dict[str, Any]:
        return retraining_summary(self.config, run_retraining(self.config, job_dir, root=root))

    def rebuild_records(self, job_dir: Path) -> bool:
        return False  # budgets have no other record: they are computed again
