"""What each acquisition function selects: the prediction-entropy distribution of its
selections against the pool's (recorded by the loop each round, see
`robustal.loop.entropy_histograms`), and the class balance of the labeled set it builds."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from robustal.errors import RobustALError
from robustal.report.results import FUNCTION
from robustal.report.tables import Cell, per_row, regime_table

HISTOGRAM_COLUMNS = ("pool_entropy_histogram", "selected_entropy_histogram")


def _fractions(counts) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return counts / counts.sum() if counts.sum() > 0 else counts


def rounds_with_entropies(rounds: pd.DataFrame) -> pd.DataFrame:
    """The rounds that recorded both entropy histograms (not round 0, not runs recorded before
    the loop kept them)."""
    if not set(HISTOGRAM_COLUMNS) <= set(rounds.columns):
        return rounds.iloc[0:0]
    recorded = rounds[list(HISTOGRAM_COLUMNS)].map(lambda value: hasattr(value, "__len__") and len(value) > 0)
    present = recorded.all(axis=1)
    return rounds[present]


def entropy_distributions(rounds: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per combination of `keys`, ``training`` and ``function``: the entropy distributions of
    the pool and of the selected samples (``pool`` / ``selected``: the share of each bin,
    averaged over rounds and seeds, each round weighing the same), and how far the selections
    are from the pool: ``distance`` is the total-variation distance between the two
    distributions of a round (0 = same distribution, 1 = disjoint), averaged over a run's rounds,
    then mean (``distance_mean``) and std (``distance_std``) over runs (seeds).

    Also ``pool_entropy`` / ``selected_entropy``: the mean normalised entropy H / ln(classes),
    from bin centres. Empty when no round recorded entropies.
    """
    recorded = rounds_with_entropies(rounds)
    rows = []
    if recorded.empty:
        return pd.DataFrame(rows)
    for key, group in recorded.groupby([*keys, "training", FUNCTION], sort=True, dropna=False):
        pool = np.stack([_fractions(h) for h in group["pool_entropy_histogram"]])
        selected = np.stack([_fractions(h) for h in group["selected_entropy_histogram"]])
        per_round = 0.5 * np.abs(selected - pool).sum(axis=1)
        per_run = pd.Series(per_round, index=group.index).groupby(group["run_id"]).mean()
        centres = (np.arange(pool.shape[1]) + 0.5) / pool.shape[1]
        rows.append({
            **dict(zip([*keys, "training", FUNCTION], key)),
            "pool": pool.mean(axis=0),
            "selected": selected.mean(axis=0),
            "pool_entropy": float(pool.mean(axis=0) @ centres),
            "selected_entropy": float(selected.mean(axis=0) @ centres),
            "distance_mean": float(per_run.mean()),
            "distance_std": float(per_run.std()) if len(per_run) > 1 else math.nan,
            "runs": len(per_run),
            "rounds": len(group),
        })  # fmt: skip
    return pd.DataFrame(rows)


def labeled_sets(rounds: pd.DataFrame) -> dict[str, np.ndarray]:
    """Run id -> the indices labeled by the end of the run (every round's ``selected``)."""
    ordered = rounds.sort_values("round")
    return {
        run_id: np.concatenate([np.asarray(selected, dtype=np.int64) for selected in run["selected"]])
        for run_id, run in ordered.groupby("run_id", sort=False)
    }


def load_train_labels(dataset: str, data_root: str | None) -> tuple[np.ndarray | None, int, str]:
    """(training labels, number of classes, "") of `dataset`, read from `data_root` (None: the
    default data root); (None, 0, why) when the dataset cannot be read here."""
    from robustal.data import dataset_info
    from robustal.data.paths import resolve_data_root

    try:
        data = dataset_info(dataset).loader(resolve_data_root(data_root))  # native size: labels only
    except RobustALError as error:
        return None, 0, str(error)
    return data.train.labels.numpy(), int(data.num_classes), ""


def class_balance(
    rounds: pd.DataFrame, keys: list[str], labels: dict[str, tuple[np.ndarray, int]]
) -> pd.DataFrame:
    """Per combination of `keys`, ``training`` and ``function``: the share of each class in the
    final labeled set (``shares``, mean over runs) and its balance, the entropy of the class
    distribution divided by ln(classes) (1 = every class equally often): ``balance_mean`` /
    ``balance_std`` over runs. `labels`: dataset -> (training labels, number of classes);
    datasets missing from it are left out."""
    sets = labeled_sets(rounds)
    per_run: list[dict[str, Any]] = []
    for run_id, run in rounds.groupby("run_id", sort=False):
        first = run.iloc[0]
        if first["dataset"] not in labels:
            continue
        train_labels, classes = labels[first["dataset"]]
        shares = np.bincount(train_labels[sets[run_id]], minlength=classes) / len(sets[run_id])
        nonzero = shares[shares > 0]
        balance = float(-(nonzero * np.log(nonzero)).sum() / math.log(classes))
        per_run.append({**{k: first[k] for k in [*keys, "training", FUNCTION]}, "shares": shares, "balance": balance})
    rows = []
    if not per_run:
        return pd.DataFrame(rows)
    for key, group in pd.DataFrame(per_run).groupby([*keys, "training", FUNCTION], sort=True, dropna=False):
        rows.append({
            **dict(zip([*keys, "training", FUNCTION], key)),
            "shares": np.stack(group["shares"].to_list()).mean(axis=0),
            "balance_mean": float(group["balance"].mean()),
            "balance_std": float(group["balance"].std()) if len(group) > 1 else math.nan,
            "runs": len(group),
        })  # fmt: skip
    return pd.DataFrame(rows)


def _number(text: str, value: float) -> Cell:
    return Cell(text, classes=("number",), value=float(value))


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def entropy_table(distributions: pd.DataFrame, regimes: list[str], functions: list[str], table_id: str) -> str:
    """Per function and regime (rows of `entropy_distributions`): the distance of the
    selections' entropy distribution to the pool's, and both mean normalised entropies."""
    columns = {
        "TV distance to pool": per_row(
            lambda r: _number(_mean_std(r["distance_mean"], r["distance_std"]), r["distance_mean"])
        ),
        "mean entropy, selected": per_row(lambda r: _number(f"{r['selected_entropy']:.3f}", r["selected_entropy"])),
        "mean entropy, pool": per_row(lambda r: _number(f"{r['pool_entropy']:.3f}", r["pool_entropy"])),
    }
    caption = (
        "Total-variation distance between the entropy distributions of the selected samples and of the pool "
        "(mean ± std over seeds), and their mean normalised entropy (from the bin centres)."
    )
    return regime_table(distributions, regimes, functions, columns, table_id, caption)


def balance_table(balance: pd.DataFrame, regimes: list[str], functions: list[str], table_id: str) -> str:
    """Per function and regime (rows of `class_balance`): the balance of the final labeled set
    and the shares of its largest and smallest class."""
    columns = {
        "balance": per_row(lambda r: _number(_mean_std(r["balance_mean"], r["balance_std"]), r["balance_mean"])),
        "largest class (%)": per_row(lambda r: _number(f"{100 * max(r['shares']):.1f}", max(r["shares"]))),
        "smallest class (%)": per_row(lambda r: _number(f"{100 * min(r['shares']):.1f}", min(r["shares"]))),
    }
    caption = (
        "Balance of the final labeled set (mean ± std over seeds) and the shares of its most and least "
        "labeled class (mean over seeds)."
    )
    return regime_table(balance, regimes, functions, columns, table_id, caption)
