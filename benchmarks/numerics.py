"""Effects of the numerics-changing speed settings on what a robust-AL run computes (MNIST, LeNet-5).

1. **Validation subset** (``validation_size``): the best epoch of each round is chosen by PGD-50
   robustness on the first N validation images. One training trajectory (the paper's protocol:
   warm start, 10 epochs per round, PGD-40 training, continuing from the epoch the full 5,000
   select) is scored after every epoch on all 5,000 validation images, per image; the scores of
   N = 500, 1,000, 5,000 are read off the same attacks (evaluation results do not depend on the
   batch size). The table gives the epoch each N selects and the test robustness of that epoch.
2. **Precision**: the same short run (same seed) in fp32 and in bf16 (+ channels_last + BN
   folding), round by round: accuracy, robustness, selected epoch.

    python benchmarks/numerics.py --rounds 3 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from robustal.accel import Execution
from robustal.attacks import PGD
from robustal.config import make_config
from robustal.data import Split, load_dataset
from robustal.evaluation import evaluate
from robustal.loop import run_active_learning
from robustal.models import build_model
from robustal.runtime import batch_slices, model_mode, to_float
from robustal.seeding import numpy_rng, torch_generator
from robustal.training import TrainingPlan, build_regime, fit

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results" / "numerics.md"
SUBSETS = (500, 1000, 5000)
FAST = dict(precision="bf16", channels_last=True, fold_batchnorm=True)
EXECUTION = Execution(torch.device("cpu"), **FAST)


def robust_per_image(model, split: Split, attack: PGD, execution: Execution, seed: int) -> torch.Tensor:
    """Whether each image of `split` is classified correctly both clean and after the attack (bool per image)."""
    generator = torch_generator(seed, "validation-attack")
    correct = []
    with model_mode(model, training=False), execution.context():
        for part in batch_slices(len(split), 500):
            x, y = to_float(split.images[part]), split.labels[part]
            x_adv = attack(model, x, y, generator)
            with torch.inference_mode():
                correct.append((model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y))
    return torch.cat(correct)


def validation_subsets(args, dataset) -> list[str]:
    """Part 1: which epoch each validation subset selects, and that epoch's test robustness."""
    torch.manual_seed(0)
    model = EXECUTION.prepare(build_model("lenet5", 1, 10, 32))
    train_attack = PGD(0.3, 0.01, 40)
    eval_attack = PGD(0.3, 0.01, 50)
    test = dataset.test.subset(slice(0, args.test_size))
    order = numpy_rng(0, "initial").permutation(len(dataset.train))
    first = 0
    if args.start_from:  # continue a run: its model and labeled set, then 200 random labels per round
        state = torch.load(args.start_from, weights_only=True)
        model.load_state_dict(state["model"])
        labeled = state["labeled_indices"].numpy()
        order = np.concatenate([labeled, np.setdiff1d(order, labeled, assume_unique=True)])
        first = len(labeled) // 200
    lines = [
        "## Validation subset: the epoch each subset selects",
        "",
        f"One trajectory, bf16 + channels_last + BN folding, 200 + 200 per round, {args.epochs} epochs per round"
        + (f" (continuing the run of `{args.start_from}`)" if args.start_from else "") + "; "
        f"test robustness: PGD-50 on {args.test_size} test images.",
        "",
        "| round | labeled | " + " | ".join(f"N = {n}: epoch, test robustness %" for n in SUBSETS) + " |",
        "|---:|---:|" + "---|" * len(SUBSETS),
    ]
    selections: list[dict[int, tuple[int, float]]] = []
    for round_ in range(first, first + args.rounds):
        labeled = order[: 200 * (round_ + 1)]
        data = Split(dataset.train.images[labeled], dataset.train.labels[labeled])
        states, per_image = [], []

        def score(m) -> float:
            states.append(copy.deepcopy(m.state_dict()))
            per_image.append(robust_per_image(m, dataset.validation, eval_attack, EXECUTION, 0))
            return per_image[-1].float().mean().item()

        plan = TrainingPlan(build_regime("pgd", train_attack), score, epochs=args.epochs, batch_size=100)
        fit(model, plan, data, EXECUTION, seed=0, round_number=round_)
        cells, tested = [], {}
        selections.append({})
        for n in SUBSETS:
            epoch = int(np.argmax([correct[:n].float().mean().item() for correct in per_image]))
            if epoch not in tested:
                probe = copy.deepcopy(model)
                probe.load_state_dict(states[epoch])
                tested[epoch] = evaluate(
                    probe, test, EXECUTION, eval_attack, torch_generator(0, "test-attack", round_)
                ).robust_accuracy
            cells.append(f"{epoch}, {100 * tested[epoch]:.2f}")
            selections[-1][n] = (epoch, tested[epoch])
        lines.append(f"| {round_} | {len(labeled)} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)  # `model` now holds the epoch N = 5,000 selects: the next round starts there
    lines.append("")
    for n in SUBSETS[:-1]:
        same = sum(s[n][0] == s[SUBSETS[-1]][0] for s in selections)
        change = np.mean([100 * (s[n][1] - s[SUBSETS[-1]][1]) for s in selections])
        lines.append(
            f"- N = {n}: selects the same epoch as N = 5,000 in {same} of {len(selections)} rounds; "
            f"test robustness {change:+.2f} points on average. Validation cost: {n / 5000:.0%} of the full split."
        )
    return lines + [""]


def precision_effect(args, dataset) -> list[str]:
    """Part 2: the same short run in fp32 and in bf16 (+ channels_last + BN folding)."""
    settings = dict(
        dataset="mnist", model="lenet5", initial=200, per_round=200,
        validation_size=args.precision_validation_size, test_size=args.test_size, seed=0, epochs=args.epochs,
        budget=200 * args.precision_rounds,
    )
    lines = [
        "## Precision: the same run in fp32 and in bf16",
        "",
        f"MNIST protocol (PGD-40 training, PGD-50 evaluation, {args.epochs} epochs per round), validation: first "
        f"{args.precision_validation_size} images, test: {args.test_size} images, seed 0.",
        "",
        "| round | labeled | fp32 accuracy % | fp32 robustness % | fp32 epoch | bf16 accuracy % | bf16 robustness % "
        "| bf16 epoch | fp32 train s | bf16 train s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    runs = {
        name: run_active_learning(make_config(**settings, **options), dataset=dataset).records
        for name, options in (("fp32", {}), ("bf16", FAST))
    }
    for a, b in zip(runs["fp32"], runs["bf16"]):
        lines.append(
            f"| {a.round} | {a.labeled} | {100 * a.clean_accuracy:.2f} | {100 * a.robust_accuracy:.2f} | {a.best_epoch} | "
            f"{100 * b.clean_accuracy:.2f} | {100 * b.robust_accuracy:.2f} | {b.best_epoch} | "
            f"{a.train_seconds:.0f} | {b.train_seconds:.0f} |"
        )
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision-rounds", type=int, default=2)
    parser.add_argument("--start-from", type=Path, default=None, help="validation subsets: continue this checkpoint.pt")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per round (the paper: 10)")
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--precision-validation-size", type=int, default=500)
    parser.add_argument("--parts", default="subsets,precision")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("ROBUSTAL_DATA", SHARED_DATA)))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_dataset("mnist", data_root=args.data_root)
    start, load = time.perf_counter(), os.getloadavg()[0]
    lines = ["# Numerics of the speed settings", ""]
    parts = args.parts.split(",")
    if "subsets" in parts:
        lines += validation_subsets(args, dataset)
    if "precision" in parts:
        lines += precision_effect(args, dataset)
    lines += [
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}; {time.perf_counter() - start:.0f} s; load average {load:.1f} -> "
        f"{os.getloadavg()[0]:.1f}. Command: `python benchmarks/numerics.py " + " ".join(os.sys.argv[1:]) + "`",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
