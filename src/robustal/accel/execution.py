"""`Execution`: the one route of a run's execution settings, from its config to every forward pass."""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustal.accel.cuda_graphs import replay_captured
from robustal.accel.folding import fold_batchnorm
from robustal.accel.hardware import detect_hardware, emulated_bf16_warning
from robustal.errors import unknown_name_error
from robustal.runtime import select_device

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    """`precision` if it is one of `PRECISIONS`, else a `ConfigError` listing them."""
    if precision not in PRECISIONS:
        raise unknown_name_error("precision", precision, PRECISIONS)
    return precision


@dataclass(frozen=True)
class Execution:
    """Where and how a run computes: none of it changes what is computed beyond float rounding,
    except ``precision="bf16"`` (a declared numerics change).

    - ``device``: a torch device.
    - ``precision``: ``fp32``, or ``bf16``: forward passes under `torch.autocast` with
      bfloat16 (convolutions and matrix products in bf16; weights, gradients, optimizer state,
      inputs and perturbations stay float32; losses are computed from float32 logits).
    - ``channels_last``: 4-d weights stored NHWC, which oneDNN and cuDNN convolve faster.
    - ``compile``: `torch.compile` of the model's forward (parameter names unchanged).
    - ``fold_batchnorm``: attacks run the folded view of the eval-mode model (`fold_batchnorm`).
    - ``cuda_graphs``: attack loops on CUDA inputs are captured once and replayed (no effect on CPU).

    `prepare` applies the model settings once; inside `context()` forward passes run at the
    precision and attacks find the attack view and graph replay through `current_execution`.
    """

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    fold_batchnorm: bool = False
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", torch.device(self.device))
        check_precision(self.precision)

    @classmethod
    def from_config(cls, config: Any) -> "Execution":
        """The execution of a run config (`robustal.config.RunConfig` or anything with its
        execution fields); warns once when it asks for bf16 on a CPU that would emulate it."""
        execution = cls(
            select_device(config.device), config.precision, config.channels_last, config.compile,
            config.fold_batchnorm, config.cuda_graphs,
        )  # fmt: skip
        if execution.precision == "bf16":
            warning = emulated_bf16_warning(detect_hardware(execution.device.type))
            if warning:
                warnings.warn(warning, stacklevel=2)
        return execution

    @classmethod
    def of(cls, device: "torch.device | str | Execution") -> "Execution":
        """`device` if it is an `Execution`, else the plain fp32 eager execution on `device`."""
        return device if isinstance(device, Execution) else cls(torch.device(device))

    def prepare(self, model: nn.Module) -> nn.Module:
        """`model` (changed in place) on the device, in the memory format, compiled if asked."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.compile:
            model.compile()
        return model

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision context alone: nothing for fp32, bf16 `torch.autocast` otherwise."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    @contextlib.contextmanager
    def context(self) -> Iterator["Execution"]:
        """Run the enclosed code in this execution: at its precision, attacks on its attack view."""
        token = _CURRENT.set(self)
        try:
            with self.autocast():
                yield self
        finally:
            _CURRENT.reset(token)

    def attack_view(self, model: nn.Module) -> nn.Module:
        """The module attacks differentiate: the folded view with ``fold_batchnorm``, else `model`."""
        return fold_batchnorm(model) if self.fold_batchnorm else model

    def replay(self, module: nn.Module, key: tuple, fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
        """``fn(*inputs)``, through a captured CUDA graph with ``cuda_graphs`` and CUDA inputs."""
        if self.cuda_graphs and all(t.is_cuda for t in inputs):
            return replay_captured(module, key, fn, *inputs)
        return fn(*inputs)


_CURRENT: contextvars.ContextVar[Execution] = contextvars.ContextVar("robustal_execution", default=Execution())


def current_execution() -> Execution:
    """The execution of the enclosing `Execution.context()`; outside any, fp32 eager on the CPU."""
    return _CURRENT.get()
