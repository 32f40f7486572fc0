"""Wall time of one full robust active-learning run at the paper's MNIST protocol.

The protocol of the paper's code: LeNet-5 on MNIST (32 x 32), 200 random initial labels, +200
per round up to 5,000 (25 trainings), 10 epochs per round with Adam (lr 1e-3, batch 100),
PGD-40 adversarial training (eps 0.3, step 0.01), best epoch by PGD-50 robustness on the
validation split (the first 5,000 test images, or the first ``--validation-size`` of them),
PGD-50 robustness on the other 5,000 test images after every round; acquisition ``random``.

The time is split into training (the adversarial training steps), validation (per-epoch
model selection), selection (the acquisition function) and evaluation (test split). The
results file is rewritten after every round; while the run is unfinished it shows the rounds
done and an extrapolation of the rest (clearly labelled). The run resumes from ``--run-dir``.

    python benchmarks/run_mnist_paper.py --fast --threads 1
    python benchmarks/run_mnist_paper.py --budget 600 --out /tmp/mnist_paper.md   # a quick check
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from robustal.accel import detect_hardware
from robustal.config import make_config
from robustal.data import load_dataset
from robustal.loop import CHECKPOINT_FILE, RoundRecord, run_active_learning
from robustal.runtime import select_device

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results" / "mnist_paper.md"
TARGET_MINUTES = 30


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acquisition", default="random")
    parser.add_argument("--budget", type=int, default=5000, help="below 5,000: a few rounds, extrapolated to 5,000")
    parser.add_argument("--validation-size", type=int, default=None, help="default: all 5,000 (the paper)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--fold-batchnorm", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--cuda-graphs", action="store_true", help="attacks replay CUDA graphs (GPU only)")
    parser.add_argument("--fast", action="store_true", help="robustal's --fast: the settings resolved for this device")
    parser.add_argument("--threads", type=int, default=None, help="torch threads; default: torch's choice")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("ROBUSTAL_DATA", SHARED_DATA)))
    parser.add_argument("--run-dir", type=Path, default=None, help="default: benchmarks/out/mnist_paper-<run id>")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def estimate_remaining(records: list[RoundRecord], labels_to_come: list[int]) -> dict[str, float]:
    """Seconds the rounds still to come would take, extrapolated from the rounds done.

    Training time per labeled sample and the per-round validation, selection and evaluation
    times are carried over (training grows with the labeled set; the others do not).
    """
    training = sum(r.train_seconds - r.validation_seconds for r in records) / sum(r.labeled for r in records)
    later = records[1:] or records  # round 0 selects nothing
    return {
        "training": training * sum(labels_to_come),
        "validation": np.mean([r.validation_seconds for r in records]) * len(labels_to_come),
        "selection": np.mean([r.select_seconds for r in later]) * len(labels_to_come),
        "evaluation": np.mean([r.eval_seconds for r in records]) * len(labels_to_come),
    }


def totals(records: list[RoundRecord]) -> dict[str, float]:
    return {
        "training": sum(r.train_seconds - r.validation_seconds for r in records),
        "validation": sum(r.validation_seconds for r in records),
        "selection": sum(r.select_seconds for r in records),
        "evaluation": sum(r.eval_seconds for r in records),
    }


PROTOCOL_BUDGET = 5000  # the paper's MNIST protocol; a smaller --budget is extrapolated to it


def report(args, config, records: list[RoundRecord], loads: list[float], command: str) -> str:
    goal = max(config.budget, PROTOCOL_BUDGET)
    labels_to_come = list(range(records[-1].labeled + config.per_round, goal + 1, config.per_round))
    if labels_to_come and labels_to_come[-1] != goal:
        labels_to_come.append(goal)
    done = totals(records)
    finished = not labels_to_come
    lines = [
        "# Full robust-AL run at the paper's MNIST protocol",
        "",
        f"LeNet-5, MNIST 32 x 32, `{config.acquisition}`, {config.initial} -> {config.budget} labels "
        f"(+{config.per_round} per round), {config.epochs} epochs per round, batch {config.batch_size}, Adam lr "
        f"{config.lr}, PGD-{config.train_steps} training and PGD-{config.eval_steps} evaluation (eps {config.eps}, "
        f"step {config.step_size}), validation: first {config.validation_size or 5000} test images, test: the "
        f"other 5,000. Speed settings{' (--fast)' if config.fast else ''}: precision `{config.precision}`, channels_last {config.channels_last}, "
        f"fold_batchnorm {config.fold_batchnorm}, compile {config.compile}, cuda_graphs {config.cuda_graphs}, {torch.get_num_threads()} torch thread(s).",
        "",
        f"**Status: {'finished' if finished else f'PARTIAL — {len(records)} of {len(records) + len(labels_to_come)} rounds done'}.**",
        "",
        "| part | seconds | minutes |",
        "|---|---:|---:|",
    ]
    for part, seconds in done.items():
        lines.append(f"| {part} | {seconds:.0f} | {seconds / 60:.1f} |")
    total = sum(done.values())
    lines.append(f"| **total (measured)** | **{total:.0f}** | **{total / 60:.1f}** |")
    if not finished:
        rest = estimate_remaining(records, labels_to_come)
        estimate = total + sum(rest.values())
        lines += [
            "",
            "**EXTRAPOLATED, not measured**: the remaining rounds would take about "
            + ", ".join(f"{part} {seconds / 60:.0f} min" for part, seconds in rest.items())
            + f"; estimated total {estimate / 60:.0f} min for 200 -> {goal} labels (target <= {TARGET_MINUTES} min).",
        ]
    else:
        verdict = "met" if total <= TARGET_MINUTES * 60 else "MISSED"
        target = f"Target <= {TARGET_MINUTES} min on 2 CPU cores: **{verdict}** ({total / 60:.1f} min)."
        if select_device(config.device).type == "cuda":
            target = f"Run on a GPU ({torch.cuda.get_device_name()}): {total / 60:.1f} min; the target is for 2 CPU cores."
        lines += ["", target]
    lines += [
        "",
        "| round | labeled | accuracy % | robustness % | best epoch | training s | validation s | selection s | evaluation s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r.round} | {r.labeled} | {100 * r.clean_accuracy:.2f} | {100 * r.robust_accuracy:.2f} | {r.best_epoch} | "
            f"{r.train_seconds - r.validation_seconds:.0f} | {r.validation_seconds:.0f} | {r.select_seconds:.1f} | "
            f"{r.eval_seconds:.0f} |"
        )
    lines += [
        "",
        f"**Noise**: 1-minute load average during the run: {min(loads):.1f} to {max(loads):.1f} (on the 2-core "
        "machine, shared with other engineers' jobs, 2.0 = both cores busy). Wall times depend on that load.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"{detect_hardware(select_device(config.device).type).describe()}, torch {torch.__version__}. "
        f"Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    execution = dict(
        precision=args.precision, channels_last=args.channels_last, fold_batchnorm=args.fold_batchnorm,
        compile=args.compile, cuda_graphs=args.cuda_graphs,
    )
    if args.fast:  # what --fast resolves to; flags given explicitly still win
        execution = {"fast": True, **{k: v for k, v in execution.items() if v and v != "fp32"}}
    config = make_config(
        dataset="mnist", model="lenet5", acquisition=args.acquisition, initial=200, per_round=200,
        budget=args.budget, epochs=10, batch_size=100, optimizer="adam", lr=1e-3, eps=0.3, step_size=0.01,
        train_steps=40, eval_steps=50, validation_size=args.validation_size, **execution,
        seed=args.seed, data_root=str(args.data_root),
    )
    run_dir = args.run_dir or REPO / "benchmarks" / "out" / f"mnist_paper-{config.run_id()}"
    dataset = load_dataset("mnist", data_root=args.data_root)
    command = "python benchmarks/run_mnist_paper.py " + " ".join(os.sys.argv[1:])
    loads: list[float] = [os.getloadavg()[0]]
    checkpoint = run_dir / CHECKPOINT_FILE  # a resumed run reports the rounds done before too
    records = [RoundRecord(**r) for r in torch.load(checkpoint, weights_only=True)["records"]] if checkpoint.exists() else []

    def on_round(record: RoundRecord) -> None:
        loads.append(os.getloadavg()[0])
        records.append(record)
        print(
            f"round {record.round:>2} labeled {record.labeled:>5} accuracy {100 * record.clean_accuracy:.2f}% "
            f"robustness {100 * record.robust_accuracy:.2f}% train {record.train_seconds:.0f}s "
            f"(validation {record.validation_seconds:.0f}s) select {record.select_seconds:.1f}s "
            f"eval {record.eval_seconds:.0f}s load {loads[-1]:.1f}",
            flush=True,
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report(args, config, records, loads, command))

    start = time.perf_counter()
    result = run_active_learning(config, run_dir, dataset=dataset, on_round=on_round)
    records[:] = result.records  # rounds restored from an interrupted run keep their measured times
    args.out.write_text(report(args, config, records, loads, command))
    print(f"finished in {time.perf_counter() - start:.0f}s of this process; results: {args.out}")


if __name__ == "__main__":
    main()
