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

from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from robustal.report.results import FUNCTION  # noqa: E402
from robustal.report.styles import function_style  # noqa: E402

DPI = 100
MAX_PANEL_COLUMNS = 4  # panels per row of the entropy figure: 12 functions wrap into 3 rows


def _save(figure, path: str | os.PathLike, title: str) -> None:
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def panel_grid(count: int, max_columns: int = MAX_PANEL_COLUMNS) -> tuple[int, int]:
    """(rows, columns) of a grid of `count` panels, at most `max_columns` per row."""
    columns = max(1, min(count, max_columns))
    return -(-count // columns), columns


def plot_entropy_distributions(
    distributions: pd.DataFrame,
    path: str | os.PathLike,
    regimes: Sequence[str],
    regime_titles: Sequence[str],
    functions: Sequence[str],
    title: str = "",
) -> None:
    """Save `entropy_distributions_figure` as a PNG."""
    _save(entropy_distributions_figure(distributions, regimes, regime_titles, functions), path, title)


def entropy_distributions_figure(
    distributions: pd.DataFrame, regimes: Sequence[str], regime_titles: Sequence[str], functions: Sequence[str]
) -> Figure:
    """Panels per training regime (a block of rows each) and function (at most
    `MAX_PANEL_COLUMNS` per row, in the order of `functions`): the pool's entropy distribution
    (grey) and the selected samples' (in the function's style), as the share of samples per bin
    of the normalised entropy H / ln(classes). `distributions` has the rows of
    `entropy_distributions` for one panel group."""
    functions = [name for name in functions if name in set(distributions[FUNCTION])]
    block_rows, columns = panel_grid(len(functions))
    figure, axes = plt.subplots(
        block_rows * len(regimes), columns, figsize=(2.6 * columns + 0.6, 2.3 * block_rows * len(regimes) + 0.6),
        squeeze=False,
    )  # fmt: skip
    for axis in axes.flat[len(functions) * len(regimes) :]:
        axis.set_visible(False)  # the last row of a block may be short
    for block, (regime, regime_name) in enumerate(zip(regimes, regime_titles)):
        for index, function in enumerate(functions):
            axis = axes[block * block_rows + index // columns][index % columns]
            match = distributions[(distributions["training"] == regime) & (distributions[FUNCTION] == function)]
            _draw_entropy_panel(axis, match, function, regime_name)
            if index + columns >= len(functions):  # no panel below in this block
                axis.set_xlabel("entropy / ln(classes)", fontsize=8)
            if index % columns == 0:
                axis.set_ylabel("share of samples (%)", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="upper center")
    return figure


def _draw_entropy_panel(axis, match: pd.DataFrame, function: str, regime_name: str) -> None:
    axis.set_title(f"{function}\n{regime_name}", fontsize=8)
    if match.empty:
        axis.text(0.5, 0.5, "no rounds recorded", ha="center", va="center", transform=axis.transAxes)
        return
    entry = match.iloc[0]
    edges = np.linspace(0.0, 1.0, len(entry["pool"]) + 1)
    style = function_style(function)
    axis.stairs(100 * entry["pool"], edges, fill=True, color="0.75", label="pool")
    axis.stairs(
        100 * entry["selected"], edges, color=style["color"], linestyle=style["linestyle"], linewidth=1.8,
        label="selected",
    )  # fmt: skip
    axis.text(0.03, 0.95, f"TV {entry['distance_mean']:.2f}", transform=axis.transAxes, va="top", fontsize=8)
    axis.set_xlim(0, 1)
    axis.tick_params(labelsize=7)


def plot_class_balance(
    balance: pd.DataFrame,
    path: str | os.PathLike,
    regimes: Sequence[str],
    regime_titles: Sequence[str],
    functions: Sequence[str],
    title: str = "",
) -> None:
    """Save `class_balance_figure` as a PNG."""
    _save(class_balance_figure(balance, regimes, regime_titles, functions), path, title)


def class_balance_figure(
    balance: pd.DataFrame, regimes: Sequence[str], regime_titles: Sequence[str], functions: Sequence[str]
) -> Figure:
    """Heatmaps (one per training regime) of the share of each class (columns, %) in the final
    labeled set of each function (rows), mean over seeds; white = the uniform share, blue
    below it down to 0 %, red above it up to the largest share."""
    classes = len(balance["shares"].iloc[0])
    uniform = 100.0 / classes
    figure, axes = plt.subplots(
        1, len(regimes), figsize=(max(4.5, 0.45 * classes + 2.2) * len(regimes), 0.45 * len(functions) + 1.6),
        squeeze=False,
    )  # fmt: skip
    largest = max(float(np.max(shares)) for shares in balance["shares"]) * 100
    # a share lies in [0, 100] %: two linear halves around the uniform share, not one symmetric
    # range that would run below 0 % whenever a class holds more than twice the uniform share
    norm = TwoSlopeNorm(vcenter=uniform, vmin=0.0, vmax=max(largest, 2 * uniform))
    for axis, regime, regime_name in zip(axes[0], regimes, regime_titles):
        rows = balance[balance["training"] == regime].set_index(FUNCTION)
        shown = [f for f in functions if f in rows.index]
        matrix = np.stack([100 * rows.loc[f, "shares"] for f in shown]) if shown else np.zeros((0, classes))
        image = axis.imshow(matrix, cmap="RdBu_r", norm=norm, aspect="auto")
        if classes <= 20:
            for (i, j), value in np.ndenumerate(matrix):
                axis.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7)
        axis.set_yticks(range(len(shown)), shown, fontsize=8)
        axis.set_xticks(range(classes), [str(c) for c in range(classes)], fontsize=7)
        axis.set_xlabel("class", fontsize=8)
        axis.set_title(regime_name, fontsize=9)
        figure.colorbar(image, ax=axis, label="share of labeled set (%)", shrink=0.8)
    return figure


def plot_retraining_gains(
    summary: pd.DataFrame, path: str | os.PathLike, panels: Sequence[tuple[str, pd.DataFrame]], functions: Sequence[str]
) -> None:
    """One panel per (dataset / model, training): robustness gain (percentage points) vs
    retraining budget, a line per acquisition function (in the order of `functions`, in its
    `function_style`), error bars +/- one std over seeds. `panels` are (title, rows of `summary`) pairs."""
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for axis, (panel_title, rows) in zip(axes[0], panels):
        for function in functions:
            line = rows[rows["acquisition"] == function].sort_values("budget")
            if line.empty:
                continue
            axis.errorbar(
                line["budget"], 100 * line["robust_gain_mean"], yerr=100 * line["robust_gain_std"].fillna(0.0),
                markersize=4, capsize=3, label=function, **function_style(function),
            )  # fmt: skip
        axis.axhline(0.0, color="0.5", linewidth=0.8)
        axis.set_title(panel_title, fontsize=9)
        axis.set_xlabel("retraining budget (labels)", fontsize=8)
        axis.set_ylabel("robustness gain (points)", fontsize=8)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(figure, path, "")
