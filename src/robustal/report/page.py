"""``robustal report``: a study's results as one HTML page (``index.html``) with its figures
as PNG files beside it (``figures/``), linked by relative paths: the output folder is
self-contained (no scripts, no network), so it can be copied, zipped or served as it is.

Sections: learning curves, the paper's tables (final budget, area under the learning curve),
what each function selects (entropy of the selections vs the pool, class balance), retraining
(test selection), and the exact settings and versions of every number.
"""

from __future__ import annotations

import os
import time
from html import escape
from pathlib import Path

import pandas as pd

from robustal import __version__
from robustal.report.autoattack import autoattack_section
from robustal.report.curves import plot_learning_curve_panels
from robustal.report.figures import plot_class_balance, plot_entropy_distributions
from robustal.report.markup import figure, figure_file, heading, paragraph, section
from robustal.report.results import (
    FUNCTION,
    StudyResults,
    load_study_results,
    ordered_functions,
    ordered_regimes,
    regime_title,
)
from robustal.experiments import retraining_results
from robustal.report.retraining import retraining_section
from robustal.report.selections import (
    balance_table,
    class_balance,
    entropy_distributions,
    entropy_table,
    load_train_labels,
)
from robustal.report.settings import settings_section
from robustal.report.stats import SCORES, run_scores, score_columns, summarise, with_baseline_difference
from robustal.report.tables import comparison_table

PAGE_FILE = "index.html"
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1.5em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin-top: 1.5em; } .meta { color: #555; } nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.8em 0 1.4em; font-size: 0.92em; }
caption { caption-side: bottom; text-align: left; color: #555; font-size: 0.9em; padding-top: 0.4em; }
th, td { border: 1px solid #d0d0d0; padding: 0.3em 0.6em; } thead th { background: #f2f2f2; }
tbody th { text-align: left; font-weight: 600; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { font-weight: 700; background: #e3f4e6; } td.best::after { content: " \\25B2"; color: #1a7f37; }
td.diff { color: #555; } figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; }
p.empty { color: #777; font-style: italic; } td.broken { color: #b00020; font-weight: 700; }
"""
SECTIONS = (
    ("curves", "Learning curves"),
    ("tables", "Accuracy and robustness per acquisition function"),
    ("autoattack", "Robustness under AutoAttack"),
    ("selections", "What each function selects"),
    ("retraining", "Retraining (test selection)"),
    ("settings", "Settings and versions"),
)


def write_report(
    study_dir: str | os.PathLike, out_dir: str | os.PathLike, retraining: pd.DataFrame | None = None
) -> Path:
    """Write the report of the study at `study_dir` to `out_dir` (``index.html`` and
    ``figures/*.png``); returns the page's path.

    `retraining`: the retraining rows to show (columns of
    `robustal.experiments.RETRAINING_COLUMNS`); None reads them from the study.
    Raises `ConfigError` when `study_dir` is no study or has no finished run.
    """
    results = load_study_results(study_dir)
    if retraining is None:
        retraining = retraining_results(study_dir)
    return render_report(results, out_dir, retraining)


def render_report(results: StudyResults, out_dir: str | os.PathLike, retraining: pd.DataFrame | None) -> Path:
    """Write the report of `results` (and of the `retraining` rows, if any) to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    context = _Context(results, out)
    bodies = {
        "curves": context.curves_section(),
        "tables": context.tables_section(),
        "autoattack": autoattack_section(results),
        "selections": context.selections_section(),
        "retraining": retraining_section(retraining, out),
        "settings": settings_section(results),
    }
    nav = "<nav>" + "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title in SECTIONS) + "</nav>"
    finished = len(results.finished_run_ids)
    meta = (
        f"Study directory {results.study_dir} · {finished} finished run{'s' if finished != 1 else ''} of "
        f"{len(results.status)} · generated {time.strftime('%Y-%m-%d %H:%M:%S %z')} by robustal {__version__}"
    )
    page = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Study report: {escape(results.name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Study report: {escape(results.name)}</h1>",
        paragraph(meta, "meta"),
        nav,
        *(section(key, title, bodies[key]) for key, title in SECTIONS),
        "</body></html>",
    ])  # fmt: skip
    path = out / PAGE_FILE
    path.write_text(page, encoding="utf-8")
    return path


class _Context:
    """The parts of the page that need the study's results, the output folder and the order of
    the functions (every figure and table lists them in that order)."""

    def __init__(self, results: StudyResults, out: Path) -> None:
        self.results = results
        self.out = out
        self.keys = results.group_columns
        self.functions = ordered_functions(results.rounds[FUNCTION])
        self.groups = list(results.groups())

    def _regimes(self, rows: pd.DataFrame) -> tuple[list[str], list[str]]:
        regimes = ordered_regimes(rows["training"])
        return regimes, [regime_title(regime) for regime in regimes]

    def _functions(self, rows: pd.DataFrame) -> list[str]:
        present = set(rows[FUNCTION])
        return [function for function in self.functions if function in present]

    def curves_section(self) -> list[str]:
        parts = [paragraph(
            "Clean accuracy and robustness against the number of labels; one line per acquisition function: "
            "the mean over seeds, the band ± one standard deviation."
        )]  # fmt: skip
        for index, (title, rows) in enumerate(self.groups):
            regimes, titles = self._regimes(rows)
            path, relative = figure_file(self.out, f"learning_curves_{index}_{title}.png")
            plot_learning_curve_panels(rows, path, regimes, titles, self.functions, title=title)
            parts += [heading(title), figure(relative, f"learning curves, {title}", f"Learning curves: {title}.")]
        return parts

    def tables_section(self) -> list[str]:
        scores = run_scores(self.results.rounds, self.keys)
        parts = [paragraph(
            "Mean ± standard deviation over seeds, in %; ▲ marks the best mean of each column; Δ random is the "
            "difference of the means to random, in percentage points. Standard AL (standard training) and robust "
            "AL (adversarial training) side by side. The area under the learning curve is normalised by the range "
            "of labels (the curve's average height), so it is comparable with the final values."
        )]  # fmt: skip
        for index, (title, rows) in enumerate(self.results.groups(scores)):
            regimes, _ = self._regimes(rows)
            functions = self._functions(rows)
            parts.append(heading(title))
            for score, description in SCORES.items():
                columns = score_columns(score)
                summary = summarise(rows, ["training", FUNCTION], columns)
                summary = with_baseline_difference(summary, ["training"], columns)
                labels = sorted(rows["labeled"].unique())
                caption = f"{title}: {description}"
                if score == "final":
                    caption += f", at {', '.join(map(str, labels))} labels"
                if summary["runs"].nunique() == 1:
                    caption += f"; {int(summary['runs'].iloc[0])} seeds per cell"
                table_id = f"table-{score}-{index}"
                parts.append(comparison_table(summary, score, regimes, functions, table_id, caption + "."))
        return parts

    def selections_section(self) -> list[str]:
        parts = [
            heading("Entropy of the selected samples vs the pool"),
            paragraph(
                "The prediction entropy of the model that selected, normalised by ln(classes), of the pool (grey) and "
                "of the samples each function selected (in its color), as the share of samples per bin, averaged over "
                "rounds and seeds. TV is the total-variation distance between the two (0: the selections have the "
                "pool's entropy distribution, as DRE intends; 1: disjoint)."
            ),
        ]
        distributions = entropy_distributions(self.results.rounds, self.keys)
        if distributions.empty:
            parts.append(paragraph("No round recorded entropies (runs from before robustal recorded them).", "empty"))
        for index, (title, rows) in enumerate(self.results.groups(distributions)):
            regimes, titles = self._regimes(rows)
            path, relative = figure_file(self.out, f"selection_entropy_{index}_{title}.png")
            plot_entropy_distributions(rows, path, regimes, titles, self.functions, title=title)
            table = entropy_table(rows, regimes, self._functions(rows), f"entropy-{index}")
            parts += [heading(title, 4), figure(relative, f"entropy of selections, {title}"), table]
        parts += [heading("Class balance of the labeled set"), *self._class_balance_parts()]
        return parts

    def _class_balance_parts(self) -> list[str]:
        labels, problems = {}, []
        for dataset in sorted(self.results.rounds["dataset"].unique()):
            run_id = self.results.rounds.loc[self.results.rounds["dataset"] == dataset, "run_id"].iloc[0]
            data_root = self.results.configs.get(run_id, {}).get("config", {}).get("data_root")
            train_labels, classes, problem = load_train_labels(dataset, data_root)
            if train_labels is None:
                why = f"Class balance of {dataset} left out: its labels cannot be read here ({problem})."
                problems.append(paragraph(why, "empty"))
            else:
                labels[dataset] = (train_labels, classes)
        parts = [paragraph(
            "The share of each class in the final labeled set (mean over seeds); balance = entropy of the class "
            "distribution / ln(classes): 1 when every class is labeled equally often."
        ), *problems]  # fmt: skip
        balance = class_balance(self.results.rounds, self.keys, labels)
        for index, (title, rows) in enumerate(self.results.groups(balance)):
            regimes, titles = self._regimes(rows)
            functions = self._functions(rows)
            path, relative = figure_file(self.out, f"class_balance_{index}_{title}.png")
            plot_class_balance(rows, path, regimes, titles, functions, title=title)
            table = balance_table(rows, regimes, functions, f"balance-{index}")
            parts += [heading(title, 4), figure(relative, f"class balance, {title}"), table]
        return parts
