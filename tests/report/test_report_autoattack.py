"""The report's AutoAttack section: numbers recomputed from the stored evaluations, broken evaluations flagged."""

import json
import re
import shutil

import pytest

from robustal.experiments import run_directory
from robustal.experiments.evaluate import evaluate_study
from robustal.report import write_report

pytest.importorskip("pyautoattack")


@pytest.fixture(scope="module")
def evaluated_study(tiny_study, tmp_path_factory):
    study = tmp_path_factory.mktemp("aa") / "study"
    shutil.copytree(tiny_study, study)
    outcomes = evaluate_study(study, "apgd-ce", samples=30)
    assert set(outcomes.values()) == {"computed"}
    return study


def _section(page: str) -> str:
    return page.split('<section id="autoattack">')[1].split("</section>")[0]


def _evaluations(study) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(study.glob("runs/*/autoattack-*.json"))]


def test_autoattack_table_holds_the_mean_of_the_stored_evaluations(evaluated_study, tmp_path):
    section = _section(write_report(evaluated_study, tmp_path / "out").read_text())
    manifest = json.loads((evaluated_study / "manifest.json").read_text())["runs"]
    for function in ("random", "entropy"):
        row = re.search(rf"<tr><th>{function}</th>(.*?)</tr>", section).group(1)
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
        for regime, offset in (("standard", 0), ("pgd", 4)):
            evaluations = [
                e for e in _evaluations(evaluated_study)
                if manifest[e["run_id"]]["acquisition"] == function and manifest[e["run_id"]]["training"] == regime
            ]  # fmt: skip
            runs, pgd, auto, gap = cells[offset : offset + 4]
            assert int(runs) == len(evaluations) == 2
            expected = sum(100 * e["robust_accuracy"] for e in evaluations) / 2
            assert float(auto.split(" ± ")[0]) == pytest.approx(expected, abs=0.006)
            expected_gap = sum(100 * (e["pgd_robust_accuracy"] - e["robust_accuracy"]) for e in evaluations) / 2
            assert float(gap.split(" ")[0]) == pytest.approx(expected_gap, abs=0.006)
    assert "PGD below AutoAttack" not in section or "broken" in section


def test_a_pgd_number_below_autoattack_is_flagged(evaluated_study, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(evaluated_study, study)
    path = next(study.glob("runs/*/autoattack-*.json"))
    evaluation = json.loads(path.read_text())
    evaluation["pgd_robust_accuracy"] = evaluation["robust_accuracy"] - 0.1  # as a broken PGD would report
    path.write_text(json.dumps(evaluation))
    section = _section(write_report(study, tmp_path / "out").read_text())
    assert section.count("⚠ PGD below AutoAttack") == 1


def test_without_evaluations_the_section_says_how_to_get_them(tiny_study, tmp_path):
    section = _section(write_report(tiny_study, tmp_path / "out").read_text())
    assert "No run has been evaluated with AutoAttack yet" in section
