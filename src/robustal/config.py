"""`RunConfig`: every setting of one active-learning run, validated before any compute."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from robustal.accel import check_precision, detect_hardware, fast_settings
from robustal.attacks import NORMS
from robustal.acquisition import check_acquisition_name, identity_options
from robustal.data import dataset_info
from robustal.data.registry import MAX_IMAGE_SIZE, check_image_size
from robustal.errors import ConfigError, unknown_name_error
from robustal.models import check_model_name
from robustal.runtime import select_device
from robustal.training import LR_SCHEDULES, OPTIMIZERS, TRADES_BETA, TRAINING_REGIMES

# Settings that say where or how fast a run happens, not what it computes: not part of its id
# (CUDA graphs replay the very kernels an eager run launches).
# `fast` is resolved into the execution fields, which are what the id uses.
NON_IDENTITY_FIELDS = ("data_root", "device", "cuda_graphs", "keep_round_checkpoints", "fast")
WARM_UPS = ("same", "standard")
# Upper bounds that catch typos before they become hours of compute or one huge batch in memory
# (the paper uses 10-20 epochs, 7-50 PGD steps and batches of 100-128).
MAX_REPEATS = 10_000
MAX_BATCH_SIZE = 65_536
# An L2 radius (or step) is a Euclidean length in pixels scaled to [0, 1]: it can exceed 1
# (2.0 on MNIST, 0.5 on CIFAR-10 are common) and reaches sqrt(pixels) (28 on MNIST, 388 on
# 224x224 RGB) only for a ball holding every image. 100 allows every radius in use and catches
# typos (20 for 2.0 is already a ball around most of MNIST, but it is the user's choice).
MAX_L2_RADIUS = 100.0
MAX_TRADES_BETA = 100.0  # Zhang et al. use 1 to 6; beyond 100 the clean loss no longer counts


def check_attack_radius(value: float | None, info: ValidationInfo) -> float | None:
    """`value` (an attack radius or step) unless beyond its bound for the run's ``norm`` (L-inf: the
    [0, 1] range of pixels; L2: `MAX_L2_RADIUS`); a pydantic validator (``norm`` is declared first)."""
    norm = info.data.get("norm")
    if value is None:
        return value
    if norm == "l2" and value > MAX_L2_RADIUS:
        raise ValueError(
            f"{value} is beyond {MAX_L2_RADIUS:g}, the bound of L2 radii and steps: an L2 radius is the Euclidean "
            "length of a perturbation of pixels scaled to [0, 1] (common: 2.0 on MNIST, 0.5 on CIFAR-10)"
        )
    if norm != "l2" and value > 1:
        raise ValueError(
            f"{value} is beyond the [0, 1] pixel range: images are scaled to [0, 1], so 1 already allows any "
            "image under the L-inf norm (the paper: eps 0.3 on MNIST, 8/255 on SVHN and CIFAR-10; "
            "for an L2 radius, set norm to l2)"
        )
    return value


class RunConfig(BaseModel):
    """One run: dataset, model, acquisition function, training regime, protocol sizes, attacks, seed.

    Defaults are the paper's MNIST protocol (eps 0.3, step 0.01, PGD-40 training, PGD-50
    evaluation, Adam lr 1e-3, batch 100, 10 epochs per round) on the offline `digits` dataset.
    """

    # no inf / nan anywhere: `--eps 1e400` is infinity and would train and report garbage
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dataset: str = Field("digits", description="dataset name (see `robustal data list`), a .npz path, folder:PATH or csv:FILE.csv")
    model: str | None = Field(None, description="architecture; None = the dataset's default")
    image_size: int | None = Field(
        None, gt=0, description=f"resize images; None = the dataset's default (at most {MAX_IMAGE_SIZE})"
    )
    acquisition: str = Field("random", description="acquisition function (the README lists them)")
    acquisition_options: dict[str, Any] = Field(default_factory=dict, description="options of the acquisition function")
    training: str = Field(
        "pgd", description="standard, pgd (adversarial training, Madry et al.) or trades (Zhang et al. 2019)"
    )
    trades_beta: float = Field(
        TRADES_BETA, gt=0, le=MAX_TRADES_BETA,
        description="weight of TRADES's KL term against the clean loss (training trades only)",
    )  # fmt: skip
    warm_up: str = Field(
        "same",
        description="how round 0 (the random initial set) trains: 'same' as every round, or 'standard' "
        "training (the paper's warm-up: the first batch is selected by a standard-trained model)",
    )
    initial: int = Field(200, ge=1, description="size of the random initial labeled set")
    per_round: int = Field(200, ge=1, description="samples labeled per round")
    budget: int = Field(1000, ge=1, description="total labeled samples at the end")
    epochs: int = Field(10, ge=1, le=MAX_REPEATS, description="training epochs per round")
    batch_size: int = Field(100, ge=1, le=MAX_BATCH_SIZE, description="training batch (with its adversarial copy in memory)")
    optimizer: str = Field("adam", description="adam or sgd (momentum 0.9)")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay of the optimizer")
    lr_schedule: str = Field("constant", description="constant or cyclic (per batch: up over 2/5 of the steps, then down)")
    norm: str = Field("linf", description="threat model of training and evaluation attacks: linf or l2")
    eps: float = Field(
        0.3, ge=0,
        description=f"radius of training and evaluation attacks in the norm, pixels scaled to [0, 1] (L-inf: at most 1; "
        f"L2: at most {MAX_L2_RADIUS:g})",
    )  # fmt: skip
    step_size: float = Field(0.01, gt=0, description="PGD step size in the norm, pixels scaled to [0, 1]")
    train_steps: int = Field(40, ge=1, le=MAX_REPEATS, description="PGD steps during adversarial training")
    eval_steps: int = Field(50, ge=1, le=MAX_REPEATS, description="PGD steps for robust accuracy (validation and test)")
    validation_size: int | None = Field(None, ge=1, description="validation samples for model selection; None = all")
    test_size: int | None = Field(None, ge=1, description="test samples evaluated; None = all")
    retrain_from_scratch: bool = Field(False, description="reinitialise the model every round instead of warm-starting")
    augment: bool | None = Field(
        None, description="train-time random crop + flip; None = the dataset's default (on for SVHN and CIFAR-10)"
    )
    seed: int = Field(0, ge=0, description="seed of every random choice")
    precision: str = Field("fp32", description="fp32, or bf16: forward passes under bf16 autocast, fp32 weights")
    channels_last: bool = Field(False, description="channels-last (NHWC) weights for faster convolutions")
    fold_batchnorm: bool = Field(
        False, description="attacks run a fast eval-mode view: BatchNorm folded into convolutions, fused CPU kernels"
    )
    compile: bool = Field(False, description="torch.compile the model")
    cuda_graphs: bool = Field(False, description="PGD attacks replay captured CUDA graphs on GPUs (no effect on CPU)")
    fast: bool = Field(
        False,
        description="set precision, channels_last, fold_batchnorm, compile and cuda_graphs (those not given) to the "
        "fastest settings measured for this device: bf16 only with native bf16 (robustal speedtest)",
    )
    keep_round_checkpoints: bool = Field(
        False, description="keep every round's checkpoint (checkpoint-round-NN.pt), to re-evaluate learning curves"
    )
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N")
    data_root: str | None = Field(None, description="folder with datasets")

    _attack_radius = field_validator("eps", "step_size")(check_attack_radius)

    @model_validator(mode="before")
    @classmethod
    def _resolve_fast(cls, settings: Any) -> Any:
        # `fast` fills in the execution fields not given, for the device this run uses; the
        # resolved values are what the run records and what its id uses (a stored config has
        # every field, so reading it back resolves nothing again)
        if not isinstance(settings, dict) or not settings.get("fast"):
            return settings
        device = select_device(str(settings.get("device", "auto")))
        resolved = fast_settings(detect_hardware(device.type))
        return {**resolved, **settings}

    @model_validator(mode="after")
    def _check(self) -> "RunConfig":
        info = dataset_info(self.dataset)
        check_model_name(self.model or info.default_model)
        check_acquisition_name(self.acquisition)
        if self.training not in TRAINING_REGIMES:
            raise unknown_name_error("training regime", self.training, TRAINING_REGIMES)
        if self.norm not in NORMS:
            raise unknown_name_error("norm", self.norm, NORMS)
        if self.optimizer not in OPTIMIZERS:
            raise unknown_name_error("optimizer", self.optimizer, OPTIMIZERS)
        if self.lr_schedule not in LR_SCHEDULES:
            raise unknown_name_error("learning-rate schedule", self.lr_schedule, LR_SCHEDULES)
        check_precision(self.precision)
        if self.warm_up not in WARM_UPS:
            raise unknown_name_error("warm-up", self.warm_up, WARM_UPS)
        check_image_size(self.image_size or info.default_size, info.name)  # a .npz's own size too
        if self.budget < self.initial:
            raise ConfigError(f"budget ({self.budget}) must be at least the initial labeled set ({self.initial})")
        return self

    @property
    def model_name(self) -> str:
        """The architecture actually used (the dataset's default when ``model`` is None)."""
        return self.model or dataset_info(self.dataset).default_model

    @property
    def uses_augmentation(self) -> bool:
        """Whether training batches are augmented (``augment``, else the dataset's default)."""
        return dataset_info(self.dataset).augment if self.augment is None else self.augment

    @property
    def rounds(self) -> int:
        """Number of acquisition rounds after the initial one."""
        return -(-(self.budget - self.initial) // self.per_round)

    def resolved_settings(self) -> dict[str, Any]:
        """Every setting that determines the results, as resolved (the model name, the acquisition
        function's options, augmentation as used), without paths or devices: what a study's
        manifest records of each run."""
        values = self.model_dump(exclude=set(NON_IDENTITY_FIELDS))
        values["model"] = self.model_name
        values["acquisition_options"] = identity_options(self.acquisition, self.acquisition_options)
        # augmentation as used: asking for the dataset's default is the same run as not asking
        values["augment"] = None if self.uses_augmentation == dataset_info(self.dataset).augment else self.uses_augmentation
        if self.training != "trades":  # beta as used: no other regime reads it
            values["trades_beta"] = TRADES_BETA
        return values

    def identity(self) -> dict[str, Any]:
        """What the run id is computed from: `resolved_settings` without the settings left at their
        defaults, so that a setting added in a later version leaves every earlier run's id
        unchanged. (A default therefore never changes: tests/test_config.py keeps them.)"""
        return without_defaults(self.resolved_settings(), type(self))

    def run_id(self) -> str:
        """A stable 16-hex-digit id of `identity()`: the same run always gets the same id."""
        return stable_id(self.identity())


def without_defaults(values: dict[str, Any], schema: type[BaseModel]) -> dict[str, Any]:
    """`values` without the entries equal to the default of `schema`'s field of the same name."""
    fields = schema.model_fields
    return {
        name: value for name, value in values.items()
        if name not in fields or value != fields[name].get_default(call_default_factory=True)
    }  # fmt: skip


def stable_id(identity: dict[str, Any]) -> str:
    """A 16-hex-digit digest of `identity` (JSON with sorted keys): the id of a run or job."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def validation_message(error: ValidationError) -> str:
    """The problems of a pydantic `error` as one line: ``setting: problem; ...`` (a problem of
    no single setting, e.g. from a model validator, without the ``setting:`` part)."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def make_config(**settings: Any) -> RunConfig:
    """Build a `RunConfig`, turning validation failures into one readable `ConfigError`."""
    try:
        return RunConfig(**settings)
    except ValidationError as error:
        raise ConfigError("invalid run settings: " + validation_message(error)) from None
