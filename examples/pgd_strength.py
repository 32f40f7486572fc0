"""How strong is the per-round PGD? Robust accuracy of a run's final model under PGD with more
steps and larger step sizes, on the first N test images (compare with `robustal evaluate`).

    python examples/pgd_strength.py RUN_DIR --n 1000
"""

from __future__ import annotations

import argparse

import torch

from robustal.accel import Execution
from robustal.attacks import PGD
from robustal.data import load_dataset
from robustal.evaluation import evaluate
from robustal.loop import load_checkpoint
from robustal.seeding import torch_generator

SETTINGS = [(50, 0.01), (100, 0.01), (100, 0.03), (200, 0.05)]  # (steps, step size); the paper: 50, 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run directory (robustal run --out, or a study's runs/<id>)")
    parser.add_argument("--n", type=int, default=1000, help="first N test images")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, config, _ = load_checkpoint(args.run)
    split = load_dataset(config.dataset, config.data_root, config.image_size).test.subset(slice(0, args.n))
    # the run's memory format and folded BatchNorm, in fp32 (as `robustal evaluate` attacks)
    execution = Execution(precision="fp32", channels_last=config.channels_last, fold_batchnorm=config.fold_batchnorm)
    model = execution.prepare(model).eval()
    print(f"| PGD steps | step size | robust accuracy (eps {config.eps}, {args.n} images) |\n|---:|---:|---:|")
    for steps, step_size in SETTINGS:
        attack = PGD(config.eps, step_size, steps, True)
        metrics = evaluate(model, split, execution, attack, torch_generator(config.seed, "pgd-strength"))
        print(f"| {steps} | {step_size} | {100 * metrics.robust_accuracy:.2f} % |")


if __name__ == "__main__":
    main()
