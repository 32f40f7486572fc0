"""The report's "Retraining (test selection)" section: the robustness gained by retraining a
study's models on inputs each acquisition function selected, per budget.

Its rows come from ``robustal.experiments.retraining_results(study_dir)`` (retraining jobs of
a study), one per retrained model: `RETRAINING_COLUMNS`, accuracies as fractions.
"""

from __future__ import annotations

import os

import pandas as pd

from robustal.errors import ConfigError
from robustal.experiments import RETRAINING_COLUMNS
from robustal.report.figures import plot_retraining_gains
from robustal.report.markup import figure, figure_file, heading, paragraph
from robustal.report.results import function_label, group_title, ordered_functions
from robustal.report.stats import summarise
from robustal.report.tables import Cell, format_mean_std, marked_column, mean_std_entry, render_table, row_or_none

NO_RETRAINING = "No retraining jobs in this study."
PANEL_KEYS = ["dataset", "model", "training"]


def retraining_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model, training, acquisition and budget: mean and std over seeds of the
    accuracies before / after and of ``robust_gain``, and ``runs`` (rows averaged)."""
    missing = [column for column in RETRAINING_COLUMNS if column not in frame.columns]
    if missing:
        raise ConfigError(
            f"retraining results lack the columns {', '.join(missing)}; expected {', '.join(RETRAINING_COLUMNS)}"
        )
    metrics = ["clean_before", "robust_before", "clean_after", "robust_after", "robust_gain"]
    # a function with options (dre with either quota) is its own row
    labels = [function_label(name, options) for name, options in zip(frame["acquisition"], frame["acquisition_options"])]
    return summarise(frame.assign(acquisition=labels), [*PANEL_KEYS, "acquisition", "budget"], metrics)


def retraining_section(frame: pd.DataFrame | None, out_dir: str | os.PathLike) -> list[str]:
    """The HTML parts of the section: a table per dataset / model / training (rows: acquisition
    functions, columns: budgets, cells: robustness gain in points, mean ± std over seeds, the
    best gain per budget marked) and a figure of the gains; one line when there are no rows."""
    if frame is None or frame.empty:
        return [paragraph(NO_RETRAINING, "empty")]
    summary = retraining_summary(frame)
    functions = ordered_functions(summary["acquisition"])
    parts = [
        paragraph(
            "Each acquisition function picked a budget of new inputs from a candidate pool, they were labeled and "
            "the study's model was retrained on them. Gain = robustness after retraining − robustness before, "
            "in percentage points, mean ± std over seeds; the best gain per budget is marked."
        )
    ]
    panels = []
    for index, (key, rows) in enumerate(summary.groupby(PANEL_KEYS, sort=True, dropna=False)):
        values = dict(zip(PANEL_KEYS, key))
        title = f"{group_title({k: values[k] for k in ('dataset', 'model')})}, {values['training']} training"
        panels.append((title, rows))
        source = frame[(frame[PANEL_KEYS] == pd.Series(values)).all(axis=1)].drop_duplicates("source_run_id")
        before = source["robust_before"]
        caption = (
            f"{title}: robustness gain by retraining (points). Robustness before retraining: "
            f"{format_mean_std(before.mean(), before.std() if len(before) > 1 else float('nan'))} % "
            f"over {len(source)} model(s)."
        )
        parts += [heading(title), _gain_table(rows, functions, f"retraining-{index}", caption)]
    path, relative = figure_file(out_dir, "retraining_gain.png")
    plot_retraining_gains(summary, path, panels, functions)
    parts.append(figure(relative, "robustness gain vs retraining budget", "Robustness gain vs retraining budget."))
    return parts


def _gain_table(rows: pd.DataFrame, functions: list[str], table_id: str, caption: str) -> str:
    budgets = sorted(rows["budget"].unique())
    cells = rows.set_index(["acquisition", "budget"])
    shown = [f for f in functions if f in set(rows["acquisition"])]
    columns = [
        marked_column([
            mean_std_entry(row_or_none(cells, (function, budget)), "robust_gain", show_runs=True, signed=True)
            for function in shown
        ])
        for budget in budgets
    ]  # fmt: skip
    header = [[Cell("function", header=True)] + [Cell(f"budget {budget}", header=True) for budget in budgets]]
    body = [[Cell(function, header=True)] + [column[i] for column in columns] for i, function in enumerate(shown)]
    return render_table(header, body, table_id, caption)
