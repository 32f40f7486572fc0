"""The report's figures (PNG, matplotlib's Agg backend) besides the learning curves: entropy
of the selections vs the pool, class balance of the labeled sets, retraining gains."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from robustal.report.results import FUNCTION  # noqa: E402

DPI = 100


def function_colors(functions: Sequence[str]) -> dict[str, str]:
    """A fixed color per function, in the order given (the same in every figure)."""
    palette = plt.get_cmap("tab10" if len(functions) <= 10 else "tab20")
    return {name: matplotlib.colors.to_hex(palette(i % palette.N)) for i, name in enumerate(functions)}


def _save(figure, path: str | os.PathLike, title: str) -> None:
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_entropy_distributions(
    distributions: pd.DataFrame,
    path: str | os.PathLike,
    regimes: Sequence[str],
    regime_titles: Sequence[str],
    colors: dict[str, str],
    title: str = "",
) -> None:
    """A grid of panels (rows: training regimes, columns: functions): the pool's entropy
    distribution (grey) and the selected samples' (the function's color), as the share of
    samples per bin of the normalised entropy H / ln(classes). `distributions` has the rows of
    `entropy_distributions` for one panel group."""
    functions = [name for name in colors if name in set(distributions[FUNCTION])]
    figure, axes = plt.subplots(
        len(regimes), len(functions), figsize=(2.6 * len(functions) + 0.6, 2.3 * len(regimes) + 0.6),
        squeeze=False, sharex=True,
    )  # fmt: skip
    for row, (regime, regime_name) in enumerate(zip(regimes, regime_titles)):
        for column, function in enumerate(functions):
            axis = axes[row][column]
            match = distributions[(distributions["training"] == regime) & (distributions[FUNCTION] == function)]
            axis.set_title(f"{function}\n{regime_name}", fontsize=8)
            if match.empty:
                axis.text(0.5, 0.5, "no rounds recorded", ha="center", va="center", transform=axis.transAxes)
                continue
            entry = match.iloc[0]
            edges = np.linspace(0.0, 1.0, len(entry["pool"]) + 1)
            axis.stairs(100 * entry["pool"], edges, fill=True, color="0.75", label="pool")
            axis.stairs(100 * entry["selected"], edges, color=colors[function], linewidth=1.8, label="selected")
            axis.text(
                0.03, 0.95, f"TV {entry['distance_mean']:.2f}", transform=axis.transAxes, va="top", fontsize=8
            )
            axis.set_xlim(0, 1)
            axis.tick_params(labelsize=7)
            if row == len(regimes) - 1:
                axis.set_xlabel("entropy / ln(classes)", fontsize=8)
            if column == 0:
                axis.set_ylabel("share of samples (%)", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="upper center")
    _save(figure, path, title)


def plot_class_balance(
    balance: pd.DataFrame,
    path: str | os.PathLike,
    regimes: Sequence[str],
    regime_titles: Sequence[str],
    functions: Sequence[str],
    title: str = "",
) -> None:
    """Heatmaps (one per training regime) of the share of each class (columns, %) in the final
    labeled set of each function (rows), mean over seeds; white = the uniform share."""
    classes = len(balance["shares"].iloc[0])
    uniform = 100.0 / classes
    figure, axes = plt.subplots(
        1, len(regimes), figsize=(max(4.5, 0.45 * classes + 2.2) * len(regimes), 0.45 * len(functions) + 1.6),
        squeeze=False,
    )  # fmt: skip
    largest = max(float(np.max(shares)) for shares in balance["shares"]) * 100
    spread = max(largest - uniform, uniform, 1e-9)
    for axis, regime, regime_name in zip(axes[0], regimes, regime_titles):
        rows = balance[balance["training"] == regime].set_index(FUNCTION)
        shown = [f for f in functions if f in rows.index]
        matrix = np.stack([100 * rows.loc[f, "shares"] for f in shown]) if shown else np.zeros((0, classes))
        image = axis.imshow(matrix, cmap="RdBu_r", vmin=uniform - spread, vmax=uniform + spread, aspect="auto")
        if classes <= 20:
            for (i, j), value in np.ndenumerate(matrix):
                axis.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7)
        axis.set_yticks(range(len(shown)), shown, fontsize=8)
        axis.set_xticks(range(classes), [str(c) for c in range(classes)], fontsize=7)
        axis.set_xlabel("class", fontsize=8)
        axis.set_title(regime_name, fontsize=9)
        figure.colorbar(image, ax=axis, label="share of labeled set (%)", shrink=0.8)
    _save(figure, path, title)


def plot_retraining_gains(
    summary: pd.DataFrame, path: str | os.PathLike, panels: Sequence[tuple[str, pd.DataFrame]], colors: dict[str, str]
) -> None:
    """One panel per (dataset / model, training): robustness gain (percentage points) vs
    retraining budget, a line per acquisition function, error bars +/- one std over seeds.
    `panels` are (title, rows of `summary`) pairs."""
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for axis, (panel_title, rows) in zip(axes[0], panels):
        for function in colors:
            line = rows[rows["acquisition"] == function].sort_values("budget")
            if line.empty:
                continue
            axis.errorbar(
                line["budget"], 100 * line["robust_gain_mean"], yerr=100 * line["robust_gain_std"].fillna(0.0),
                marker="o", markersize=3, capsize=3, label=function, color=colors[function],
            )  # fmt: skip
        axis.axhline(0.0, color="0.5", linewidth=0.8)
        axis.set_title(panel_title, fontsize=9)
        axis.set_xlabel("retraining budget (labels)", fontsize=8)
        axis.set_ylabel("robustness gain (points)", fontsize=8)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(figure, path, "")
