"""How DRE's two quota rules select on a trained model: the paper's skews the batch towards high
entropy, the proportional one keeps the pool's entropy distribution.

For each run directory given (its final model), the pool is a seeded sample of unlabeled MNIST
training images; DRE picks k of them with each quota rule over several seeds, and `entropy`
(top-k) is shown for reference. Prints a Markdown table (entropies in bits; "upper half" = share
of the selection in the upper 25 of DRE's 50 entropy bins).

    python examples/dre_selection.py RUN_DIR [RUN_DIR ...] --pool 5000 --k 200 --seeds 10
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from robustal.acquisition import PoolContext, build_acquisition
from robustal.acquisition.density import DRE_BINS, histogram_bins
from robustal.acquisition.scoring import entropy, predict_probabilities
from robustal.data import load_dataset
from robustal.loop import load_checkpoint


def describe(entropies_bits: np.ndarray, chosen: np.ndarray, bin_of: np.ndarray) -> tuple[float, float]:
    """Mean entropy (bits) of `chosen` positions and their share in the upper half of the bins."""
    return float(entropies_bits[chosen].mean()), float((bin_of[chosen] >= DRE_BINS // 2).mean())


def analyse(run_dir: str, pool_size: int, k: int, seeds: int) -> list[str]:
    model, config, state = load_checkpoint(run_dir)
    dataset = load_dataset(config.dataset, config.data_root, config.image_size)
    unlabeled = np.flatnonzero(state["labels"].numpy() < 0)
    pool = np.sort(np.random.default_rng(0).choice(unlabeled, size=min(pool_size, len(unlabeled)), replace=False))
    context = PoolContext(model.eval(), dataset.train.images, state["labeled_indices"].numpy(), torch.device("cpu"))
    entropies_bits = entropy(predict_probabilities(context, pool)).double().numpy() / np.log(2)
    bin_of = histogram_bins(entropies_bits, DRE_BINS)
    position = {index: i for i, index in enumerate(pool)}
    rows = [("pool", [describe(entropies_bits, np.arange(len(pool)), bin_of)])]
    for label, name, options in [
        ("dre, quota=paper", "dre", {"quota": "paper"}),
        ("dre, quota=proportional", "dre", {"quota": "proportional"}),
        ("entropy (top-k)", "entropy", {}),
    ]:
        acquisition = build_acquisition(name, **options)
        picks = [acquisition.select(context, pool, k, np.random.default_rng(seed)) for seed in range(seeds)]
        rows.append((label, [describe(entropies_bits, np.array([position[i] for i in p]), bin_of) for p in picks]))
    title = f"{run_dir} ({config.training} training, {config.acquisition}, {len(state['labeled_indices'])} labels)"
    lines = [f"\n{title}: pool of {len(pool)}, k = {k}, {seeds} seeds\n",
             "| selection | mean entropy (bits) | share in the upper half of the bins |", "|---|---:|---:|"]  # fmt: skip
    for label, values in rows:
        means, shares = np.array(values).T
        lines.append(f"| {label} | {means.mean():.3f} ± {means.std():.3f} | {100 * shares.mean():.1f} % ± {100 * shares.std():.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories (robustal run --out, or a study's runs/<id>)")
    parser.add_argument("--pool", type=int, default=5000)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for run_dir in args.runs:
        print("\n".join(analyse(run_dir, args.pool, args.k, args.seeds)))


if __name__ == "__main__":
    main()
