"""`robustal report` on a small real study: every figure is a PNG beside the page, every table
holds the numbers recomputed here from the runs' Parquet files, the page renders in Chromium."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

from cli_helpers import main_refuses
from html_tables import parse_page
from study_helpers import tiny_spec
from robustal.data import load_dataset
from robustal.experiments import StudySpec, run_directory
from robustal.experiments.store import write_study

REGIMES = ["standard", "pgd"]  # the order of the tables' column groups
METRICS = ["clean_accuracy", "robust_accuracy"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def page(tiny_report):
    return parse_page(tiny_report.read_text())


@pytest.fixture(scope="module")
def rounds(tiny_study) -> pd.DataFrame:
    """Every round of every run, read straight from the runs' Parquet files (not via the report)."""
    return pd.concat([pd.read_parquet(path) for path in sorted(tiny_study.glob("runs/*/rounds.parquet"))])


def by_run(rounds: pd.DataFrame):
    return rounds.sort_values("round").groupby("run_id")


def mean_std_text(values) -> str:
    values = np.asarray(values, dtype=np.float64)
    return f"{100 * values.mean():.2f} ± {100 * values.std(ddof=1):.2f}"


def test_page_links_every_figure_and_each_is_a_nonblank_png_beside_it(tiny_report, page):
    html = tiny_report.read_text()
    kinds = ("learning_curves", "selection_entropy", "class_balance")
    expected = {f"figures/{kind}_0_digits_small_cnn.png" for kind in kinds}
    assert set(page.images) == expected and len(page.images) == 3
    on_disk = {f"figures/{path.name}" for path in (tiny_report.parent / "figures").iterdir()}
    assert on_disk == expected  # every PNG written is shown
    for source in expected:
        path = tiny_report.parent / source
        assert path.read_bytes()[:8] == PNG_MAGIC
        pixels = matplotlib.image.imread(path)
        assert min(pixels.shape[:2]) > 200 and pixels[..., :3].std() > 0.05
    assert "<script" not in html and "http://" not in html and "https://" not in html  # self-contained
    assert list(page.sections) == ["curves", "tables", "autoattack", "selections", "retraining", "settings"]


@pytest.mark.parametrize("score", ["final", "area"])
def test_table_means_and_stds_are_those_of_the_parquet_rows(rounds, page, score):
    table = page.tables[f"table-{score}-0"]
    assert [cell.text for cell in table.head[0][1:]] == ["standard AL (standard training)", "robust AL (pgd training)"]
    assert "2 seeds per cell" in table.caption
    for (training, acquisition), group in rounds.groupby(["training", "acquisition"]):
        for position, metric in enumerate(METRICS):
            runs = [run[metric].to_numpy() for _, run in by_run(group)]
            assert all(len(values) == 3 for values in runs) and len(runs) == 2  # labels 20, 40, 60; 2 seeds
            if score == "final":
                per_run = [values[-1] for values in runs]
            else:  # trapezoids over 20 / 40 / 60 labels divided by the range 40: (v0 + 2 v1 + v2) / 4
                per_run = [(values[0] + 2 * values[1] + values[2]) / 4 for values in runs]
            cell = table.row(acquisition)[1 + 4 * REGIMES.index(training) + 2 * position]
            assert cell.text == mean_std_text(per_run), (training, acquisition, metric)
            assert cell.value == pytest.approx(np.mean(per_run), abs=1e-12)


@pytest.mark.parametrize("score", ["final", "area"])
def test_the_marked_best_is_the_column_maximum_and_differences_are_to_random(page, score):
    table = page.tables[f"table-{score}-0"]
    assert [row[0].text for row in table.body] == ["random", "entropy"]
    for column in range(1, 9, 2):
        cells = table.column(column)
        top = max(cell.value for cell in cells)
        assert [("best" in cell.classes) for cell in cells] == [cell.value == top for cell in cells]
        random_value = table.row("random")[column].value
        difference = table.row("entropy")[column + 1]
        assert difference.value == pytest.approx(table.row("entropy")[column].value - random_value, abs=1e-12)
        assert difference.text == f"{100 * difference.value:+.2f}"
        assert table.row("random")[column + 1].text == "—"


def test_entropy_table_is_recomputed_from_the_recorded_histograms(rounds, page):
    table = page.tables["entropy-0"]
    recorded = rounds[rounds["round"] > 0]
    for (training, acquisition), group in recorded.groupby(["training", "acquisition"]):
        distances = []
        for _, run in by_run(group):
            per_round = [
                0.5 * np.abs(np.divide(s, sum(s)) - np.divide(p, sum(p))).sum()
                for p, s in zip(run["pool_entropy_histogram"], run["selected_entropy_histogram"])
            ]
            distances.append(np.mean(per_round))
        row = table.row(acquisition)
        tv, selected_entropy, pool_entropy = row[1 + 3 * REGIMES.index(training) : 4 + 3 * REGIMES.index(training)]
        assert tv.value == pytest.approx(np.mean(distances), abs=1e-12)
        assert tv.text == f"{np.mean(distances):.3f} ± {np.std(distances, ddof=1):.3f}"
        if acquisition == "entropy":  # it takes the most uncertain samples of the pool
            assert selected_entropy.value > pool_entropy.value


def test_class_balance_table_is_recomputed_from_the_labeled_sets(rounds, page):
    labels = load_dataset("digits").train.labels.numpy()
    table = page.tables["balance-0"]
    for (training, acquisition), group in rounds.groupby(["training", "acquisition"]):
        balances = []
        for _, run in by_run(group):
            labeled = np.concatenate(run["selected"].to_list())
            assert len(labeled) == 60
            shares = np.bincount(labels[labeled], minlength=10) / 60
            shares = shares[shares > 0]
            balances.append(-(shares * np.log(shares)).sum() / math.log(10))
        cell = table.row(acquisition)[1 + 3 * REGIMES.index(training)]
        assert cell.value == pytest.approx(np.mean(balances), abs=1e-12)
        assert cell.text == f"{np.mean(balances):.3f} ± {np.std(balances, ddof=1):.3f}"


def test_settings_section_has_the_attack_protocol_seeds_versions_and_every_run(tiny_study, page):
    text = " ".join(page.sections["settings"].split())
    assert "PGD-2 adversarial examples of the same images (L-inf, eps 0.1, step 0.05, random start)" in text
    assert "PGD training uses PGD-2" in text and "the first 50 test images" in text
    assert "Preset: none" in text and "name: tiny" in text  # the spec itself
    shared = {row[0].text: row[1].text for row in page.tables["settings-shared"].body}
    assert shared["eps"] == "0.1" and shared["eval_steps"] == "2" and shared["lr"] == "0.01"
    varying = {row[0].text: row[1].text for row in page.tables["settings-varying"].body}
    assert varying == {"acquisition": "entropy, random", "training": "pgd, standard", "seed": "0, 1"}
    versions = page.tables["versions"].body
    assert len(versions) == 1 and versions[0][-1].text == "8"  # one set of versions, used by all 8 runs
    assert torch.__version__ in [cell.text for cell in versions[0]]
    runs = page.tables["runs"]
    assert len(runs.body) == 8
    for row in runs.body:
        done = json.loads((run_directory(tiny_study, row[0].text) / "done.json").read_text())
        assert row[-2].value == done["clean_accuracy"] and row[-1].value == done["robust_accuracy"]


def test_without_retraining_jobs_the_section_says_so(page):
    assert "No retraining jobs in this study." in page.sections["retraining"]


def _chromium() -> str | None:
    found = (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome"))
    return next((path for path in found if path), None)


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH (CI installs the Debian package chromium)")
def test_the_page_renders_in_headless_chromium(tiny_report, tmp_path):
    screenshot = tmp_path / "page.png"
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--hide-scrollbars", f"--screenshot={screenshot}", "--window-size=1280,2400", tiny_report.as_uri(),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and screenshot.exists(), result.stderr[-2000:]
    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    assert pixels.std() > 0.1  # not blank: text, tables and figures
    assert (pixels.mean(axis=2) < 0.5).mean() > 0.01  # dark text and plot lines cover part of the page
    # the first figure was loaded: the learning curves' colored lines are in the screenshot
    colored = (pixels.max(axis=2) - pixels.min(axis=2)) > 0.3
    assert colored.sum() > 2000


@pytest.mark.parametrize(
    "target, message",
    [
        ("missing", "missing does not exist: pass a study directory (the --out of `robustal study run`)"),
        ("plain", "plain is not a study directory (no manifest.json): pass the --out of `robustal study run`"),
        ("unfinished", "unfinished has no finished runs yet (2 pending): see `robustal study status"),
    ],
)
def test_bad_study_directories_fail_with_one_clear_line(tmp_path, monkeypatch, capsys, target, message):
    (tmp_path / "plain").mkdir()
    spec = StudySpec.from_dict(tiny_spec())
    write_study(tmp_path / "unfinished", spec.to_dict(), spec.expand())  # a study whose runs never ran
    _, error = main_refuses(monkeypatch, capsys, "report", tmp_path / target, "-o", tmp_path / "out")
    assert message in error
    assert not (tmp_path / "out" / "index.html").exists()

