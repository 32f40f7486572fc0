"""Learning curves: clean and robust accuracy against the number of labels."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from robustal.report.styles import function_style  # noqa: E402

CURVE_METRICS = (("clean_accuracy", "accuracy"), ("robust_accuracy", "robustness (PGD)"))


def draw_learning_curves(
    axis, rounds: pd.DataFrame, column: str, by: str = "acquisition", functions: Sequence[str] | None = None
) -> None:
    """Draw on `axis` one line per value of `by`: the mean of `column` (in %) over the rows at
    each number of labels, with a band of +/- one standard deviation (none for a single row).

    Each line has its function's style (`function_style`); `functions` fixes the order of the
    lines (the legend's), by default sorted.
    """
    names = list(functions) if functions is not None else sorted(rounds[by].unique())
    for name in names:
        group = rounds[rounds[by] == name]
        if group.empty:
            continue
        stats = group.groupby("labeled")[column].agg(["mean", "std"]).fillna(0.0)
        style = function_style(name)
        axis.plot(stats.index, 100 * stats["mean"], markersize=4, label=name, **style)
        axis.fill_between(
            stats.index, 100 * (stats["mean"] - stats["std"]), 100 * (stats["mean"] + stats["std"]),
            color=style["color"], alpha=0.15,
        )  # fmt: skip
    axis.grid(alpha=0.3)


def plot_learning_curves(rounds: pd.DataFrame, path: str | os.PathLike, title: str = "") -> None:
    """Save a two-panel PNG (accuracy, robustness vs labels), one line per acquisition function.

    `rounds` has the columns of `robustal.loop.records_frame`; with several seeds per function
    the line is the mean and the band +/- one standard deviation.
    """
    figure = learning_curves_figure(rounds, title)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def learning_curves_figure(rounds: pd.DataFrame, title: str = "") -> Figure:
    """The figure `plot_learning_curves` saves."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for axis, (column, label) in zip(axes, CURVE_METRICS):
        draw_learning_curves(axis, rounds, column)
        axis.set_xlabel("labeled samples")
        axis.set_ylabel(f"{label} (%)")
    axes[1].legend(fontsize=8, ncol=2)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_learning_curve_panels(
    rounds: pd.DataFrame,
    path: str | os.PathLike,
    row_names: Sequence[str],
    row_titles: Sequence[str],
    functions: Sequence[str],
    title: str = "",
    row_column: str = "training",
    by: str = "function",
) -> None:
    """Save a PNG with one row of panels per value of `row_column` (in the order of `row_names`,
    titled `row_titles`) and two columns (accuracy, robustness vs labels); one line per value
    of `by` (in the order of `functions`, styled by `function_style`), mean over the rows
    (seeds) with a +/- one std band."""
    figure, axes = plt.subplots(len(row_names), 2, figsize=(11, 3.6 * len(row_names) + 0.4), squeeze=False)
    for row, (name, row_title) in enumerate(zip(row_names, row_titles)):
        for axis, (column, label) in zip(axes[row], CURVE_METRICS):
            draw_learning_curves(axis, rounds[rounds[row_column] == name], column, by=by, functions=functions)
            axis.set_title(f"{row_title}: {label}", fontsize=10)
            axis.set_xlabel("labeled samples")
            axis.set_ylabel(f"{label} (%)")
    height = figure.get_figheight()
    top = 1.0 - (0.62 if title else 0.32) / height  # room for the title and the shared legend
    # every function of every panel, once (standard AL may compare fewer functions than robust AL)
    legend = {label: handle for axis in figure.axes for handle, label in zip(*axis.get_legend_handles_labels())}
    labels = [name for name in functions if name in legend]
    handles = [legend[name] for name in labels]
    legend_y = 1.0 - (0.38 if title else 0.02) / height
    figure.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, legend_y), ncol=min(len(labels), 6),
        fontsize=9, frameon=False,
    )  # fmt: skip
    if title:
        figure.suptitle(title, y=1.0 - 0.06 / height, va="top", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, top))
    figure.savefig(path, dpi=100)
    plt.close(figure)
