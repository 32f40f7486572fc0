"""The report's AutoAttack section: robust accuracy under AutoAttack (``robustal evaluate``) vs
PGD on the same checkpoints and images, per acquisition function, and the gap between them.

AutoAttack runs every attack of PGD's kind and stronger ones, so on the same model and images
its robust accuracy should not be above PGD's; a PGD number below AutoAttack's is flagged as a
sign of a broken evaluation.
"""

from __future__ import annotations

from html import escape

import pandas as pd

from robustal.report.markup import heading, paragraph
from robustal.report.results import FUNCTION, StudyResults, ordered_functions, ordered_regimes, regime_title

EVALUATED = "autoattack_robust_accuracy"


def evaluated_rounds(results: StudyResults) -> pd.DataFrame:
    """The final rounds of finished runs that `robustal evaluate` attacked (possibly none)."""
    rounds = results.rounds
    if EVALUATED not in rounds.columns:
        return rounds.iloc[0:0]
    last = rounds.groupby("run_id")["round"].transform("max") == rounds["round"]
    return rounds[last & rounds[EVALUATED].notna()]


def autoattack_section(results: StudyResults) -> list[str]:
    """The section's HTML parts: an explanation and one table per panel (dataset / model)."""
    rows = evaluated_rounds(results)
    parts = [paragraph(
        "Robust accuracy of each run's final model under AutoAttack (the official attack code, "
        "`robustal evaluate`) and under the run's PGD attack on the same test images, mean ± std over seeds, "
        "in %. Gap = PGD − AutoAttack in percentage points: how much PGD overestimates robustness. A point "
        "counts as robust only if it is classified correctly both clean and under attack (RobustBench)."
    )]  # fmt: skip
    if rows.empty:
        return parts + [paragraph("No run has been evaluated with AutoAttack yet: run `robustal evaluate STUDY_DIR`.", "empty")]
    for title, panel in results.groups(rows):
        parts += [heading(title), _table(panel)]
    return parts


def _table(panel: pd.DataFrame) -> str:
    regimes = ordered_regimes(panel["training"])
    header = "".join(f'<th colspan="4">{escape(regime_title(regime))}</th>' for regime in regimes)
    columns = "".join("<th>runs</th><th>PGD</th><th>AutoAttack</th><th>gap</th>" for _ in regimes)
    body = []
    for function in ordered_functions(panel[FUNCTION]):
        cells = "".join(_cells(panel[(panel[FUNCTION] == function) & (panel["training"] == regime)]) for regime in regimes)
        body.append(f"<tr><th>{escape(function)}</th>{cells}</tr>")
    attacks = ", ".join(sorted(panel["autoattack_attacks"].unique()))
    images = ", ".join(str(int(n)) for n in sorted(panel["autoattack_samples"].unique()))
    caption = f"AutoAttack attacks: {attacks}; {images} test images per model."
    return (
        f'<table class="autoattack"><caption>{escape(caption)}</caption>'
        f"<thead><tr><th rowspan=\"2\">function</th>{header}</tr><tr>{columns}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _cells(rows: pd.DataFrame) -> str:
    if rows.empty:
        return '<td class="number">0</td><td></td><td></td><td></td>'
    pgd, auto = 100 * rows["autoattack_pgd_robust_accuracy"], 100 * rows[EVALUATED]
    broken = (pgd < auto).sum()
    flag = f' class="number broken" title="PGD below AutoAttack in {broken} run(s): check the evaluation"' if broken else ' class="number"'
    gap = (pgd - auto).mean()
    return (
        f'<td class="number">{len(rows)}</td><td class="number">{_mean_std(pgd)}</td>'
        f'<td class="number">{_mean_std(auto)}</td><td{flag}>{gap:+.2f}{" ⚠ PGD below AutoAttack" if broken else ""}</td>'
    )


def _mean_std(values: pd.Series) -> str:
    return f"{values.mean():.2f} ± {values.std():.2f}" if len(values) > 1 else f"{values.mean():.2f}"
