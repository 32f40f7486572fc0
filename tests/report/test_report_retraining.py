"""The "Retraining (test selection)" section, rendered from hand-built retraining rows (the
schema of ``robustal.experiments.retraining_results``)."""

from __future__ import annotations

import pandas as pd
import pytest

from html_tables import parse_page
from robustal.errors import ConfigError
from robustal.report.retraining import NO_RETRAINING, retraining_section

# robustness gains per (acquisition, budget), one per seed; robustness before: 0.30 (seed 0), 0.31 (seed 1)
GAINS = {
    ("random", 10): [0.01, 0.03], ("random", 20): [0.02, 0.04],
    ("dre", 10): [0.05, 0.02], ("dre", 20): [0.06, 0.08],
}  # fmt: skip


def retraining_rows() -> pd.DataFrame:
    rows = []
    for (acquisition, budget), gains in GAINS.items():
        for seed, gain in enumerate(gains):
            before = 0.30 + 0.01 * seed
            rows.append(dict(
                source_run_id=f"source{seed}", dataset="digits", model="small_cnn", training="pgd",
                acquisition=acquisition, acquisition_options="{}", budget=budget, seed=seed, clean_before=0.90,
                robust_before=before,
                clean_after=0.91, robust_after=before + gain, robust_gain=gain,
            ))  # fmt: skip
    return pd.DataFrame(rows)


def test_gains_per_function_and_budget_are_mean_and_std_over_seeds_with_the_best_marked(tmp_path):
    page = parse_page("\n".join(retraining_section(retraining_rows(), tmp_path)))
    table = page.tables["retraining-0"]
    assert [cell.text for cell in table.head[0]] == ["function", "budget 10", "budget 20"]
    assert [row[0].text for row in table.body] == ["random", "dre"]  # random first
    assert [cell.text for cell in table.row("random")[1:]] == ["+2.00 ± 1.41 (n=2)", "+3.00 ± 1.41 (n=2)"]
    assert [cell.text for cell in table.row("dre")[1:]] == ["+3.50 ± 2.12 (n=2)", "+7.00 ± 1.41 (n=2)"]
    assert ["best" in cell.classes for cell in table.row("dre")[1:]] == [True, True]
    assert ["best" in cell.classes for cell in table.row("random")[1:]] == [False, False]
    assert table.row("dre")[1].value == pytest.approx(0.035)
    caption = " ".join(table.caption.split())
    assert "digits / small_cnn, pgd training" in caption
    assert "Robustness before retraining: 30.50 ± 0.71 % over 2 model(s)" in caption
    assert page.images == ["figures/retraining_gain.png"]
    assert (tmp_path / "figures" / "retraining_gain.png").read_bytes()[:4] == b"\x89PNG"


def test_a_function_with_options_is_its_own_row(tmp_path):
    rows = retraining_rows()
    variant = rows[rows["acquisition"] == "dre"].assign(
        acquisition_options='{"quota": "proportional"}', robust_gain=0.5, robust_after=0.8
    )
    table = parse_page("\n".join(retraining_section(pd.concat([rows, variant]), tmp_path))).tables["retraining-0"]
    assert [row[0].text for row in table.body] == ["random", "dre", "dre (quota=proportional)"]
    assert [cell.text for cell in table.row("dre")[1:]] == ["+3.50 ± 2.12 (n=2)", "+7.00 ± 1.41 (n=2)"]
    assert [cell.text for cell in table.row("dre (quota=proportional)")[1:]] == ["+50.00 ± 0.00 (n=2)"] * 2


@pytest.mark.parametrize("rows", [None, pd.DataFrame()])
def test_no_retraining_rows_give_one_line(tmp_path, rows):
    assert retraining_section(rows, tmp_path) == [f'<p class="empty">{NO_RETRAINING}</p>']
    assert not (tmp_path / "figures").exists()


def test_rows_without_the_schema_are_refused_with_the_expected_columns(tmp_path):
    with pytest.raises(ConfigError, match="retraining results lack the columns robust_gain; expected source_run_id, "):
        retraining_section(retraining_rows().drop(columns=["robust_gain"]), tmp_path)
