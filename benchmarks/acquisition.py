"""Time and peak memory of every acquisition function on an MNIST pool with LeNet-5.

Each function selects k samples (default 200; k-center also k = 1000) from a pool of 50,000
MNIST training images (32 x 32), with 200 labeled samples, on an untrained LeNet-5 (selection
cost does not depend on the weights being trained; the selections themselves do). The time of
every call is split into the forward pass (time spent inside the model's ``features`` and
``head``: every forward of every batch, all T passes for MC dropout) and the selection beyond it
(scoring, sorting, distances, and the backward passes of egl and dfal). Peak memory is the
highest resident set size during the call above the level before it, sampled every 2 ms.

    python benchmarks/acquisition.py                      # the full benchmark (several minutes)
    python benchmarks/acquisition.py --pool-size 2000     # a quick run
    python benchmarks/acquisition.py --functions dre,kcenter --no-write

Writes a markdown table to ``benchmarks/results/acquisition.md`` (``--out``).

OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless set): on a machine whose cores
are shared with other jobs, spinning threads made small tensor operations up to 80 times slower.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP threads

import numpy as np  # noqa: E402
import torch  # noqa: E402

from robustal.acquisition import PoolContext, available_acquisitions, build_acquisition  # noqa: E402
from robustal.data import load_dataset  # noqa: E402
from robustal.models import build_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results" / "acquisition.md"
SELECTION_TARGET_S = 2.0
KCENTER_TARGET_S = 10.0
GRADIENT_FUNCTIONS = ("dfal", "egl")  # no target: one backward pass per class per batch


@dataclass
class Measurement:
    function: str
    options: str
    k: int
    forward_s: float
    selection_s: float
    peak_mib: float

    @property
    def total_s(self) -> float:
        return self.forward_s + self.selection_s

    def target(self) -> str:
        if self.function in GRADIENT_FUNCTIONS:
            return "none"
        limit = KCENTER_TARGET_S if self.function == "kcenter" and self.k >= 1000 else SELECTION_TARGET_S
        verdict = "met" if self.selection_s <= limit else "MISSED"
        return f"<= {limit:g} s: {verdict}"


class ForwardTimer:
    """Accumulates the wall time spent inside the given modules' forward calls."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.seconds = 0.0
        self._started: list[float] = []
        self._handles = []
        for module in modules:
            self._handles.append(module.register_forward_pre_hook(self._start))
            self._handles.append(module.register_forward_hook(self._stop))

    def _start(self, module, inputs) -> None:
        self._started.append(time.perf_counter())

    def _stop(self, module, inputs, output) -> None:
        self.seconds += time.perf_counter() - self._started.pop()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def release_free_memory() -> None:
    """Hand memory freed by earlier calls back to the OS (glibc), so each call's peak starts clean."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak resident memory above the level at start, sampled by a thread every `interval` seconds."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.baseline = resident_bytes()
        self.peak = self.baseline
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, resident_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.baseline) / 2**20


def measure(context: PoolContext, pool: np.ndarray, name: str, k: int, options: dict, seed: int) -> Measurement:
    acquisition = build_acquisition(name, **options)
    timer = ForwardTimer([context.model.features, context.model.head])
    release_free_memory()
    try:
        with PeakMemory() as memory:
            start = time.perf_counter()
            chosen = acquisition.select(context, pool, k, np.random.default_rng(seed))
            total = time.perf_counter() - start
    finally:
        timer.remove()
    assert len(np.unique(chosen)) == k
    described = ", ".join(f"{key}={value}" for key, value in options.items())
    return Measurement(name, described, k, timer.seconds, total - timer.seconds, memory.extra_mib)


def runs(functions: list[str], k: int, kcenter_k: int) -> list[tuple[str, int, dict]]:
    planned = []
    for name in functions:
        planned.append((name, k, {}))
        if name == "kcenter":
            planned.append((name, k, {"features": "embedding"}))
            planned.append((name, kcenter_k, {}))
            planned.append((name, kcenter_k, {"features": "embedding"}))
    return planned


def markdown(measurements: list[Measurement], args: argparse.Namespace, pool_size: int, load_s: float, load_average: tuple) -> str:
    lines = [
        "# Acquisition benchmark",
        "",
        f"Every function selects from a pool of {pool_size:,} MNIST training images (32 x 32) with "
        f"{args.labeled} labeled samples, on an **untrained** LeNet-5 (timing does not depend on the "
        f"weights), batch size {args.batch_size}, on the CPU with {args.threads} torch threads.",
        "",
        "- *forward*: time inside the model's forward calls (all batches; all T = 10 passes for the MC dropout functions).",
        "- *selection*: everything else in `select` (scores, sorting, distances; for egl and dfal also the "
        "backward passes, one per class per batch, and DeepFool's iterations).",
        "- *peak memory*: highest resident memory during the call above the level before it (freed memory "
        "is handed back to the OS first), sampled every 2 ms.",
        "- dfal runs DeepFool (overshoot 0.02, at most 50 iterations) on a random subset of 10 k = "
        f"{10 * args.k:,} pool samples, as the paper's code; on the untrained model most samples need "
        "15 to 35 DeepFool iterations, each with one backward pass per class.",
        f"- Targets: selection <= {SELECTION_TARGET_S:g} s for every function but dfal and egl; k-center with "
        f"k = 1000 <= {KCENTER_TARGET_S:g} s.",
        "",
        "**Timings are noisy**: the machine (2 CPU cores) is shared with other engineers' jobs "
        "running at the same time; treat differences below ~30 % as noise. 1-minute load average "
        f"at the start and the end of the run: {load_average[0]:.1f} and {load_average[1]:.1f} "
        f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}).",
        "",
        "| function | options | k | forward (s) | selection (s) | total (s) | peak memory (MiB) | target |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for m in measurements:
        lines.append(
            f"| {m.function} | {m.options or '-'} | {m.k} | {m.forward_s:.2f} | {m.selection_s:.2f} | "
            f"{m.total_s:.2f} | {m.peak_mib:.0f} | {m.target()} |"
        )
    lines += [
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}. "
        f"MNIST loading took {load_s:.1f} s (not counted).",
        "",
        "Command: `python benchmarks/acquisition.py "
        + " ".join(f"--{key.replace('_', '-')} {value}" for key, value in vars(args).items() if key in ("pool_size", "k", "kcenter_k", "threads", "batch_size"))
        + "`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(SHARED_DATA) if SHARED_DATA.is_dir() else None)
    parser.add_argument("--pool-size", type=int, default=50_000)
    parser.add_argument("--labeled", type=int, default=200)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--kcenter-k", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--functions", default=",".join(available_acquisitions()), help="comma-separated names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    dataset = load_dataset("mnist", data_root=args.data_root)
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(dataset.train))
    labeled, pool = np.sort(order[: args.labeled]), np.sort(order[args.labeled : args.labeled + args.pool_size])
    torch.manual_seed(args.seed)
    model = build_model("lenet5", dataset.channels, dataset.num_classes, dataset.image_size).eval()
    context = PoolContext(model, dataset.train.images, labeled, torch.device("cpu"), args.batch_size)

    load_at_start = os.getloadavg()[0]
    measurements = []
    for name, k, options in runs(args.functions.split(","), args.k, args.kcenter_k):
        measurement = measure(context, pool, name, min(k, len(pool)), options, args.seed)
        print(f"{name:18s} {measurement.options:20s} k={measurement.k:5d} forward {measurement.forward_s:7.2f} s  "
              f"selection {measurement.selection_s:7.2f} s  peak {measurement.peak_mib:6.0f} MiB  {measurement.target()}", flush=True)
        measurements.append(measurement)
    table = markdown(measurements, args, len(pool), load_s, (load_at_start, os.getloadavg()[0]))
    if args.no_write:
        print(table)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
