"""Learning curves: clean and robust accuracy against the number of labels."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def plot_learning_curves(rounds: pd.DataFrame, path: str | os.PathLike, title: str = "") -> None:
    """Save a two-panel PNG (accuracy, robustness vs labels), one line per acquisition function.

    `rounds` has the columns of `robustal.loop.records_frame`; with several seeds per function
    the line is the mean and the band +/- one standard deviation.
    """
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for axis, column, label in zip(axes, ("clean_accuracy", "robust_accuracy"), ("accuracy", "robustness (PGD)")):
        for name, group in rounds.groupby("acquisition", sort=True):
            stats = group.groupby("labeled")[column].agg(["mean", "std"]).fillna(0.0)
            (line,) = axis.plot(stats.index, 100 * stats["mean"], marker="o", markersize=3, label=name)
            axis.fill_between(
                stats.index, 100 * (stats["mean"] - stats["std"]), 100 * (stats["mean"] + stats["std"]),
                color=line.get_color(), alpha=0.15,
            )
        axis.set_xlabel("labeled samples")
        axis.set_ylabel(f"{label} (%)")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8, ncol=2)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
