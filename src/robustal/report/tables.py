"""HTML tables of the report: cells with the best value of each column marked, and the
paper-style comparison of acquisition functions (standard AL and robust AL side by side).

Numbers are percentages with two decimals; a marked cell has the class ``best`` (shown in
bold with a triangle); every number cell carries its exact value in ``data-value``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

import numpy as np
import pandas as pd

from robustal.report.results import BASELINE, FUNCTION, regime_title
from robustal.report.stats import METRICS


@dataclass(frozen=True)
class Cell:
    """One table cell: its text (escaped when rendered), header or data, span, CSS classes and
    the exact number behind the text (``data-value``)."""

    text: str
    header: bool = False
    colspan: int = 1
    rowspan: int = 1
    classes: tuple[str, ...] = ()
    value: float | None = None


def render_table(header: list[list[Cell]], body: list[list[Cell]], table_id: str, caption: str = "") -> str:
    """A ``<table id=table_id>`` with a ``<thead>`` of `header` rows and a ``<tbody>`` of `body` rows."""

    def row(cells: list[Cell]) -> str:
        return "<tr>" + "".join(_cell(cell) for cell in cells) + "</tr>"

    parts = [f'<table id="{escape(table_id)}">']
    if caption:
        parts.append(f"<caption>{escape(caption)}</caption>")
    parts += ["<thead>", *map(row, header), "</thead>", "<tbody>", *map(row, body), "</tbody>", "</table>"]
    return "\n".join(parts)


def _cell(cell: Cell) -> str:
    tag = "th" if cell.header else "td"
    attributes = ""
    if cell.colspan > 1:
        attributes += f' colspan="{cell.colspan}"'
    if cell.rowspan > 1:
        attributes += f' rowspan="{cell.rowspan}"'
    if cell.classes:
        attributes += f' class="{" ".join(cell.classes)}"'
    if cell.value is not None and not math.isnan(cell.value):
        attributes += f' data-value="{cell.value!r}"'
    return f"<{tag}{attributes}>{escape(cell.text)}</{tag}>"


def format_mean_std(mean: float, std: float, runs: int | None = None, signed: bool = False) -> str:
    """``93.40 ± 0.52`` (fractions shown in %, with a sign when `signed`); no ``±`` for a single
    run (NaN std); ``(n=3)`` appended when `runs` is given."""
    text = f"{100 * mean:+.2f}" if signed else f"{100 * mean:.2f}"
    if not math.isnan(std):
        text += f" ± {100 * std:.2f}"
    return text if runs is None else f"{text} (n={runs})"


def format_difference(difference: float) -> str:
    """A difference of fractions in percentage points, signed: ``+1.25``; ``—`` when undefined."""
    return "—" if math.isnan(difference) else f"{100 * difference:+.2f}"


def best_flags(values) -> list[bool]:
    """Which of `values` are the largest (all of them on a tie; NaN never)."""
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).all():
        return [False] * len(values)
    return list(values == np.nanmax(values))


def marked_column(entries: list[tuple[str, float] | None]) -> list[Cell]:
    """The cells of one number column: per row (text, value), or None for a row without a
    number (shown ``—``); the cells of the largest value get the class ``best``."""
    best = best_flags([math.nan if entry is None else entry[1] for entry in entries])
    return [
        Cell("—", classes=("number",)) if entry is None
        else Cell(entry[0], classes=("number", "best") if is_best else ("number",), value=entry[1])
        for entry, is_best in zip(entries, best)
    ]  # fmt: skip


ColumnBuilder = Callable[[list, list[str]], list[Cell]]


def per_row(make: Callable[[pd.Series], Cell]) -> ColumnBuilder:
    """A column builder that makes each cell from its row alone (``—`` where a row is missing)."""
    return lambda rows, functions: [Cell("—", classes=("number",)) if row is None else make(row) for row in rows]


def regime_table(
    summary: pd.DataFrame,
    regimes: list[str],
    functions: list[str],
    columns: dict[str, ColumnBuilder],
    table_id: str,
    caption: str,
) -> str:
    """A table with a row per function and, per training regime side by side, one column per
    entry of `columns`: header -> builder(rows, functions) giving the column's cells, where
    rows[i] is the row of `summary` (keyed by ``training`` and ``function``) of functions[i]
    in that regime, or None."""
    indexed = summary.set_index(["training", FUNCTION])
    header = [
        [Cell("function", header=True, rowspan=2)]
        + [Cell(regime_title(regime), header=True, colspan=len(columns)) for regime in regimes],
        [Cell(name, header=True) for _ in regimes for name in columns],
    ]
    cells_by_column = []
    for regime in regimes:
        found = [row_or_none(indexed, (regime, function)) for function in functions]
        cells_by_column += [build(found, functions) for build in columns.values()]
    body = [[Cell(f, header=True)] + [column[i] for column in cells_by_column] for i, f in enumerate(functions)]
    return render_table(header, body, table_id, caption)


def comparison_table(
    summary: pd.DataFrame,
    score: str,
    regimes: list[str],
    functions: list[str],
    table_id: str,
    caption: str,
) -> str:
    """The paper-style table of one panel: a row per function, per training regime (side by
    side) the mean ± std of accuracy and robustness and their difference to ``random``.

    `summary` comes from `with_baseline_difference` over the run scores of `score` (``final``
    or ``area``), keyed by ``training`` and ``function``. The best mean of each accuracy /
    robustness column is marked.
    """
    show_runs = summary["runs"].nunique() > 1
    columns: dict[str, ColumnBuilder] = {}
    for metric, label in METRICS.items():
        name = f"{score}_{metric}"
        columns[label] = lambda rows, functions, name=name: marked_column(
            [mean_std_entry(row, name, show_runs) for row in rows]
        )
        columns[f"Δ {BASELINE} ({label})"] = lambda rows, functions, name=name: [
            _difference_cell(row, f"{name}_diff", function) for row, function in zip(rows, functions)
        ]
    return regime_table(summary, regimes, functions, columns, table_id, caption)


def mean_std_entry(row: pd.Series | None, name: str, show_runs: bool = False, signed: bool = False):
    """(text, value) of `row`'s ``<name>_mean`` ± ``<name>_std`` (with its ``runs`` when
    `show_runs`) for `marked_column`; None without a row."""
    if row is None:
        return None
    runs = int(row["runs"]) if show_runs else None
    return format_mean_std(row[f"{name}_mean"], row[f"{name}_std"], runs, signed), float(row[f"{name}_mean"])


def row_or_none(frame: pd.DataFrame, key) -> pd.Series | None:
    """The row of `frame` at index `key`, or None when there is none."""
    return frame.loc[key] if key in frame.index else None


def _difference_cell(row: pd.Series | None, column: str, function: str) -> Cell:
    if row is None:
        return Cell("—", classes=("number", "diff"))
    text = "—" if function == BASELINE else format_difference(row[column])
    return Cell(text, classes=("number", "diff"), value=float(row[column]))
