"""``robustal speedtest``: measure the candidate execution settings on this machine (about 30 s)
and say which to use.

Each candidate trains LeNet-5 adversarially on random 32 x 32 batches of 100 (PGD-10, then the
weight update: what a training batch of the paper's MNIST protocol does, with fewer steps) in
its `robustal.accel.Execution`. The candidates take turns, one batch each per round, so that the
load of a shared machine falls on all of them alike; the report gives the median per candidate.
"""

from __future__ import annotations

import statistics
import time
from typing import Annotated, Any, Optional

import typer

CANDIDATES: dict[str, dict[str, Any]] = {
    "fp32": {},
    "fp32 + channels_last + fold BN": dict(channels_last=True, fold_batchnorm=True),
    "bf16 + channels_last + fold BN": dict(precision="bf16", channels_last=True, fold_batchnorm=True),
}
GPU_CANDIDATES: dict[str, dict[str, Any]] = {
    "fp32 + CUDA graphs": dict(cuda_graphs=True),
    "fp32 + channels_last + fold BN + CUDA graphs": dict(channels_last=True, fold_batchnorm=True, cuda_graphs=True),
    "bf16 + channels_last + fold BN + CUDA graphs": dict(
        precision="bf16", channels_last=True, fold_batchnorm=True, cuda_graphs=True
    ),
}
# bf16 changes what is computed: it must beat the fastest fp32 setting by more than this to be chosen
BF16_MARGIN = 0.10
BATCH, STEPS = 100, 10


def candidates(device_type: str) -> dict[str, dict[str, Any]]:
    """The settings measured on a device of `device_type` (CUDA graphs only on GPUs)."""
    return {**CANDIDATES, **GPU_CANDIDATES} if device_type == "cuda" else dict(CANDIDATES)


def choose(seconds: dict[str, list[float]], settings: dict[str, dict[str, Any]]) -> str:
    """The candidate to use, from its measured `seconds` per batch: the fastest by median, except
    that a bf16 candidate must beat the fastest fp32 one by `BF16_MARGIN` (it changes numerics)."""
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    fp32 = [name for name in medians if settings[name].get("precision", "fp32") == "fp32"]
    best = min(medians, key=medians.get)
    best_fp32 = min(fp32, key=medians.get)
    return best if medians[best] < (1 - BF16_MARGIN) * medians[best_fp32] else best_fp32


def describe_flags(settings: dict[str, Any]) -> str:
    """`settings` as ``robustal run`` flags."""
    switches = [f"--{key.replace('_', '-')}" for key in ("channels_last", "fold_batchnorm", "cuda_graphs") if settings[key]]
    return " ".join([f"--precision {settings['precision']}", *switches])


def measure(settings: dict[str, dict[str, Any]], device, seconds: float, min_rounds: int = 3) -> dict[str, list[float]]:
    """Seconds per adversarial training batch of each candidate, interleaved, for about `seconds`."""
    import torch
    import torch.nn.functional as F

    from robustal.accel import Execution
    from robustal.attacks import PGD
    from robustal.models import build_model

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 1, 32, 32, generator=generator).to(device)
    y = torch.randint(0, 10, (BATCH,), generator=generator).to(device)
    attack = PGD(0.3, 0.01, STEPS)
    runs = {}
    for name, options in settings.items():
        torch.manual_seed(0)
        execution = Execution(device, **options)
        model = execution.prepare(build_model("lenet5", 1, 10, 32))
        runs[name] = (execution, model, torch.optim.Adam(model.parameters(), lr=1e-3))

    def train_batch(execution, model, optimizer) -> None:
        with execution.context():
            x_adv = attack(model, x, y)
            loss = F.cross_entropy(model.train()(x_adv).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if execution.device.type == "cuda":
            torch.cuda.synchronize()

    for run in runs.values():  # warm-up: numba compilation, oneDNN primitives, CUDA graph capture
        train_batch(*run)
    timings: dict[str, list[float]] = {name: [] for name in runs}
    start = time.perf_counter()
    while len(timings[next(iter(timings))]) < min_rounds or time.perf_counter() - start < seconds:
        for name, run in runs.items():
            begin = time.perf_counter()
            train_batch(*run)
            timings[name].append(time.perf_counter() - begin)
    return timings


def speedtest_command(
    seconds: Annotated[float, typer.Option(min=1, max=600, help="measuring time after the warm-up")] = 30.0,
    threads: Annotated[Optional[int], typer.Option(min=1, max=1024, help="torch threads; default: torch's choice")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda")] = "auto",
) -> None:
    """Measure the execution settings on this machine (about 30 s) and print which to use."""
    import torch

    from robustal.accel import detect_hardware, fast_settings
    from robustal.runtime import select_device

    if threads:
        torch.set_num_threads(threads)
    torch_device = select_device(device)
    hardware = detect_hardware(torch_device.type)
    settings = candidates(torch_device.type)
    typer.echo(f"{hardware.describe()}; {torch.get_num_threads()} torch thread(s); measuring for {seconds:.0f} s ...")
    timings = measure(settings, torch_device, seconds)
    reference = statistics.median(timings["fp32"])
    for name, times in timings.items():
        median = statistics.median(times)
        typer.echo(f"  {name:48s} {BATCH / median:8.1f} images/s  {reference / median:5.2f}x fp32  ({len(times)} batches)")
    chosen = choose(timings, settings)
    fast = fast_settings(hardware)
    picks = {key: fast[key] for key in ("precision", "channels_last", "fold_batchnorm", "cuda_graphs")}
    wanted = {"precision": "fp32", "channels_last": False, "fold_batchnorm": False, "cuda_graphs": False}
    wanted.update(settings[chosen])
    typer.echo(f"fastest here: {chosen}")
    if wanted == picks:
        typer.echo("use --fast (it picks exactly these settings on this machine)")
    else:
        fast_flags = describe_flags(picks)
        typer.echo(f"use {describe_flags(wanted)}: fastest measured here (--fast picks {fast_flags})")
