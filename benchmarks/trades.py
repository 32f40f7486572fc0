"""Training time of TRADES against PGD adversarial training (LeNet-5, MNIST, 40 attack steps each).

One epoch on 500 MNIST images at 32 x 32 (batch 100), twice each, interleaved, one torch thread;
the time is the round's training time without the per-epoch validation scoring.

    python benchmarks/trades.py [--data-root DIR]
"""

from __future__ import annotations

import argparse

import torch

from robustal.config import make_config
from robustal.data import load_dataset
from robustal.loop import run_active_learning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_dataset("mnist", args.data_root, 32)
    seconds: dict[str, list[float]] = {"pgd": [], "trades": []}
    for _ in range(args.repeats):
        for training in seconds:
            config = make_config(
                dataset="mnist", image_size=32, initial=500, per_round=500, budget=500, epochs=1,
                validation_size=50, test_size=50, eval_steps=10, training=training,
            )  # fmt: skip
            record = run_active_learning(config, dataset=dataset).records[0]
            seconds[training].append(record.train_seconds - record.validation_seconds)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, 1 thread")
    for training, values in seconds.items():
        print(f"{training:>7}: " + ", ".join(f"{value:.2f} s" for value in values))
    print(f"TRADES / PGD (last repeat): {seconds['trades'][-1] / seconds['pgd'][-1]:.2f}x")


if __name__ == "__main__":
    main()
