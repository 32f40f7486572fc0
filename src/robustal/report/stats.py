"""The numbers of the paper-style tables: per run, the accuracy and robustness at the final
budget and the normalised area under the learning curve; per function, mean and std over seeds
and the difference to ``random``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from robustal.report.results import BASELINE, FUNCTION

METRICS = {"clean_accuracy": "accuracy", "robust_accuracy": "robustness"}
SCORES = {"final": "at the final budget", "area": "area under the learning curve (normalised)"}


def normalised_area(labeled: np.ndarray, values: np.ndarray) -> float:
    """Area under the curve `values` vs `labeled` (trapezoids) divided by the range of `labeled`:
    the curve's average height, in the units of `values` (the value itself for a single point)."""
    labeled = np.asarray(labeled, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(labeled, kind="stable")
    labeled, values = labeled[order], values[order]
    if len(labeled) == 1 or labeled[-1] == labeled[0]:
        return float(values.mean())
    return float(np.trapezoid(values, labeled) / (labeled[-1] - labeled[0]))


def run_scores(rounds: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per run: `keys`, ``function``, ``training``, ``seed``, ``run_id``, the final
    ``labeled`` count, and ``final_<metric>`` / ``area_<metric>`` for accuracy and robustness."""
    rows = []
    for run_id, run in rounds.sort_values("round").groupby("run_id", sort=False):
        last = run.iloc[-1]
        row = {key: last[key] for key in [*keys, FUNCTION, "training", "seed"]}
        row.update(run_id=run_id, labeled=int(last["labeled"]))
        for metric in METRICS:
            row[f"final_{metric}"] = float(last[metric])
            row[f"area_{metric}"] = normalised_area(run["labeled"].to_numpy(), run[metric].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """Per combination of `keys`: ``<column>_mean``, ``<column>_std`` (sample std, NaN for one
    row) of each of `columns`, and ``runs`` (rows averaged)."""
    grouped = frame.groupby(keys, sort=True, dropna=False)
    summary = grouped[columns].agg(["mean", "std"])
    summary.columns = [f"{column}_{stat}" for column, stat in summary.columns]
    summary["runs"] = grouped.size()
    return summary.reset_index()


def with_baseline_difference(summary: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """`summary` (from `summarise`, with a ``function`` column) plus ``<column>_diff``: the mean
    minus the mean of ``random`` with the same `keys` (NaN where there is no random row)."""
    baseline = summary[summary[FUNCTION] == BASELINE].set_index(keys)
    summary = summary.copy()
    index = pd.MultiIndex.from_frame(summary[keys]) if len(keys) > 1 else pd.Index(summary[keys[0]])
    for column in columns:
        reference = baseline[f"{column}_mean"].reindex(index).to_numpy()
        summary[f"{column}_diff"] = summary[f"{column}_mean"].to_numpy() - reference
    return summary


def score_columns(score: str) -> list[str]:
    """The run-score columns of `score` (``final`` or ``area``): accuracy, robustness."""
    return [f"{score}_{metric}" for metric in METRICS]
