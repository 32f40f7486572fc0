"""Two computations of the same study side by side: how far do the results move when the same
runs (same ids: same settings and seeds) are computed again, on another CPU or by another version?

Per dataset, training and acquisition function, over the runs both studies finished: the mean
final accuracy, PGD robustness and AutoAttack robustness of each computation and the difference,
and per run the largest change; "identical": runs whose accuracy and robustness curves (final values
and areas) are bit for bit the same. Prints Markdown.

    python examples/compare_studies.py FIRST_STUDY SECOND_STUDY
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from robustal.report.results import FUNCTION, load_study_results
from robustal.report.stats import run_scores

KEYS = ["dataset", "training", FUNCTION]
MEASURES = {"final_clean_accuracy": "accuracy", "final_robust_accuracy": "PGD robustness", "autoattack": "AutoAttack"}


def scores(study: str) -> pd.DataFrame:
    """One row per finished run: its settings, final accuracy and robustness, AutoAttack's
    robustness and the number of test images AutoAttack ran on (NaN when not evaluated)."""
    rounds = load_study_results(study).rounds
    frame = run_scores(rounds, ["dataset"])
    final = rounds[rounds.groupby("run_id")["round"].transform("max") == rounds["round"]].set_index("run_id")
    for column, name in (("autoattack_robust_accuracy", "autoattack"), ("autoattack_samples", "autoattack_samples")):
        frame[name] = frame["run_id"].map(final[column]) if column in final.columns else float("nan")
    return frame


def pct(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{100 * value:.2f}"


def compare(first: pd.DataFrame, second: pd.DataFrame) -> list[str]:
    both = first.merge(second, on=["run_id", *KEYS, "seed"], suffixes=("_1", "_2"))
    if both.empty:
        return ["No run finished in both studies."]
    lines = [
        f"{len(both)} runs finished in both. Means over seeds in %, difference in points (second - first);"
        " AutoAttack on the test images each computation evaluated.\n",
        "| dataset | training | function | runs | identical | " + " | ".join(f"{label} (first / second / diff)" for label in MEASURES.values()) + " |",
        "|---|---|---|---:|---:|" + "---|" * len(MEASURES),
    ]
    curves = [f"{kind}_{metric}" for kind in ("final", "area") for metric in ("clean_accuracy", "robust_accuracy")]
    both["identical"] = np.logical_and.reduce([both[f"{c}_1"] == both[f"{c}_2"] for c in curves])
    for key, rows in both.groupby(KEYS):
        cells = [str(int(rows["identical"].sum()))]
        for column in MEASURES:
            a, b = rows[f"{column}_1"].mean(), rows[f"{column}_2"].mean()
            cells.append(f"{pct(a)} / {pct(b)} / {'n/a' if pd.isna(a) or pd.isna(b) else f'{100 * (b - a):+.2f}'}")
        lines.append(f"| {' | '.join(map(str, key))} | {len(rows)} | " + " | ".join(cells) + " |")
    change = (both["final_robust_accuracy_2"] - both["final_robust_accuracy_1"]).abs()
    samples = {int(n) for side in ("_1", "_2") for n in both[f"autoattack_samples{side}"].dropna()}
    lines += [
        "",
        f"Per run, the final PGD robustness moved by {100 * change.median():.2f} points (median) and at most"
        f" {100 * change.max():.2f} points; AutoAttack test images: {', '.join(f'{n:,}' for n in sorted(samples)) or 'none'}.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", help="a study directory")
    parser.add_argument("second", help="the same study computed again")
    args = parser.parse_args()
    print("\n".join(compare(scores(args.first), scores(args.second))))


if __name__ == "__main__":
    main()
