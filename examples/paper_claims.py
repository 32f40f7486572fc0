"""The paper's abstract, claim by claim, against a finished study (examples/reproduce.yaml):
prints Markdown tables of robustal's numbers (mean ± std over seeds, in %) per dataset.

    python examples/paper_claims.py docs/reproduction/study
"""

from __future__ import annotations

import argparse

import pandas as pd

from robustal.experiments import retraining_results
from robustal.report.results import BASELINE, FUNCTION, function_label, load_study_results
from robustal.report.stats import run_scores

ACCURACY_ORIENTED = ("entropy", "margin", "least_confidence")
DRE = "dre"


def pct(values: pd.Series) -> str:
    values = 100 * values.dropna()
    if values.empty:
        return "n/a"
    return f"{values.mean():.2f} ± {values.std():.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def scores_with_autoattack(results) -> pd.DataFrame:
    scores = run_scores(results.rounds, ["dataset"])
    rounds = results.rounds
    final = rounds[rounds.groupby("run_id")["round"].transform("max") == rounds["round"]]
    for column, name in (("autoattack_robust_accuracy", "autoattack"), ("autoattack_samples", "autoattack_samples")):
        evaluated = final.set_index("run_id")[column] if column in final.columns else pd.Series(dtype=float)
        scores[name] = scores["run_id"].map(evaluated)
    return scores


def test_images(rows: pd.DataFrame) -> str:
    """How many test images AutoAttack ran on in `rows` (a range when the runs differ)."""
    counts = sorted({int(n) for n in rows["autoattack_samples"].dropna()})
    if not counts:
        return "not evaluated"
    return f"{counts[0]:,} test images" if len(counts) == 1 else f"{counts[0]:,}-{counts[-1]:,} test images"


def claims(scores: pd.DataFrame, dataset: str) -> list[str]:
    rows = scores[scores["dataset"] == dataset]
    standard, robust = rows[rows["training"] == "standard"], rows[rows["training"] == "pgd"]
    if BASELINE not in set(robust[FUNCTION]):
        return [f"\n### {dataset}: no finished robust AL run of {BASELINE} yet"]
    by_function = robust.groupby(FUNCTION)
    means = by_function[["final_robust_accuracy", "area_robust_accuracy", "final_clean_accuracy", "autoattack"]].mean()
    random = means.loc[BASELINE]
    lines = [f"\n### {dataset}: robust AL at {int(robust['labeled'].max())} labels, {robust['seed'].nunique()} seeds\n",
             f"AutoAttack (APGD-CE + APGD-T) on {test_images(rows)}; PGD-50 on the run's test split.\n",
             "| function | accuracy | robustness (PGD-50) | robustness, area under curve | robustness (AutoAttack) |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for function, group in by_function:
        lines.append(
            f"| {function} | {pct(group['final_clean_accuracy'])} | {pct(group['final_robust_accuracy'])} | "
            f"{pct(group['area_robust_accuracy'])} | {pct(group['autoattack'])} |"
        )
    lines += ["", "| claim (paper) | robustal |", "|---|---|"]
    lines.append(
        f"| standard AL robustness < 0.20 % | {100 * standard['final_robust_accuracy'].max():.2f} % at most "
        f"(PGD-50; AutoAttack {100 * standard['autoattack'].max():.2f} %), {len(standard)} runs |"
    )
    lines.append(
        f"| robust AL robustness 2.35 %–63.85 % | {100 * means['final_robust_accuracy'].min():.2f} %–"
        f"{100 * means['final_robust_accuracy'].max():.2f} % (function means, PGD-50) |"
    )
    for function in ACCURACY_ORIENTED:
        if function in means.index:
            d = 100 * (means.loc[function] - random)
            lines.append(
                f"| accuracy-oriented functions worse than random on robustness: {function} | accuracy "
                f"{d['final_clean_accuracy']:+.2f}, robustness {d['final_robust_accuracy']:+.2f} final / "
                f"{d['area_robust_accuracy']:+.2f} area, AutoAttack {d['autoattack']:+.2f} (points vs random) |"
            )
    for function in [name for name in means.index if name.startswith(DRE)]:
        d = 100 * (means.loc[function] - random)
        others = means.drop(index=[name for name in means.index if name.startswith(DRE)])
        best = others["final_robust_accuracy"].idxmax()
        rank = int((means["final_robust_accuracy"] > means.loc[function, "final_robust_accuracy"]).sum()) + 1
        lines.append(
            f"| DRE beats the others on robustness (+3.84 over random, up to +24.40): {function} | vs random "
            f"{d['final_robust_accuracy']:+.2f} final / {d['area_robust_accuracy']:+.2f} area / AutoAttack "
            f"{d['autoattack']:+.2f}; vs the best other ({best}) "
            f"{100 * (means.loc[function, 'final_robust_accuracy'] - others.loc[best, 'final_robust_accuracy']):+.2f}; "
            f"rank {rank} of {len(means)} |"
        )
    return lines


def retraining_claim(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return ["\nNo retraining jobs finished."]
    frame = frame.assign(function=[function_label(a, o) for a, o in zip(frame["acquisition"], frame["acquisition_options"])])
    functions = sorted(frame["function"].unique())
    lines = ["\n### Retraining (test selection): robustness gain after fine-tuning, points\n",
             "| dataset | budget | " + " | ".join(functions) + " |", "|---|---:|" + "---:|" * len(functions)]  # fmt: skip
    for (dataset, budget), rows in frame.groupby(["dataset", "budget"]):
        gains = rows.groupby("function")["robust_gain"].mean()
        lines.append(f"| {dataset} | {budget} | " + " | ".join(f"{100 * gains.get(f, float('nan')):+.2f}" for f in functions) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="study directory of examples/reproduce.yaml")
    args = parser.parse_args()
    results = load_study_results(args.study)
    scores = scores_with_autoattack(results)
    for dataset in sorted(scores["dataset"].unique()):
        print("\n".join(claims(scores, dataset)))
    print("\n".join(retraining_claim(retraining_results(args.study))))


if __name__ == "__main__":
    main()
