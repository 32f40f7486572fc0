"""`robustal study run|status|results` as a user runs them."""

import io

import pandas as pd
import pytest

from cli_helpers import invoke as invoke_cli
from cli_helpers import main_refuses, run_robustal
from robustal.experiments import StudySpec, study_results
from study_helpers import tiny_spec, write_spec


@pytest.fixture(scope="module")
def cli_study(tmp_path_factory):
    """`robustal study run` (a subprocess) on one good run and one that fails."""
    folder = tmp_path_factory.mktemp("cli")
    spec = tiny_spec({"acquisition": ["random"], "budget": [40, 5000]})
    write_spec(folder / "spec.yaml", spec)
    out = folder / "study"
    result = run_robustal("study", "run", folder / "spec.yaml", "--out", out, "--workers", "2", timeout=300)
    return StudySpec.from_dict(spec), out, result


def invoke(*args):
    result = invoke_cli("study", *args)
    assert result.exit_code == 0, result.output
    return result.output


def test_run_reports_done_and_failed_runs_and_exits_1_on_failure(cli_study):
    spec, out, result = cli_study
    failed = next(c for c in spec.expand() if c.budget == 5000).run_id()
    assert result.returncode == 1, result.stderr
    output = " ".join(result.stdout.split())  # rich wraps long lines
    assert "2 runs: 1 done, 0 skipped (finished before), 1 failed" in output
    assert f"failed {failed}: ConfigError: budget 5000 exceeds the 1077 training samples of digits" in output
    assert "runs: 1 done, 0 running, 1 failed, 0 pending" in output  # the progress display's last state


def test_status_counts_runs_by_state(cli_study):
    _, out, _ = cli_study
    output = invoke("status", out)
    assert "2 runs: 1 done, 0 partial, 1 failed, 0 pending" in output
    assert "ConfigError: budget 5000" in " ".join(output.split())


def test_results_export_csv_and_parquet_of_the_same_query(cli_study, tmp_path):
    _, out, _ = cli_study
    expected = study_results(out, view="rounds")
    csv = pd.read_csv(io.StringIO(invoke("results", out, "--view", "rounds", "--format", "csv")))
    assert list(csv.columns) == list(expected.columns)
    pd.testing.assert_series_equal(csv["robust_accuracy"], expected["robust_accuracy"])
    assert list(csv["labeled"]) == [20, 40]

    invoke("results", out, "--view", "final", "--format", "parquet", "--output", tmp_path / "final.parquet")
    final = pd.read_parquet(tmp_path / "final.parquet")
    assert list(final["labeled"]) == [40] and final["robust_accuracy"].iloc[0] == expected["robust_accuracy"].iloc[-1]

    table = invoke("results", out)  # the summary table
    summary = study_results(out, view="summary")
    row = next(line for line in table.splitlines() if "random" in line)
    assert f"{summary['robust_accuracy_mean'].iloc[0]:.4g}" in row.split()
    assert "same in every row:" in table and "budget=40," in table.split()  # constant settings: the caption


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "missing.yaml", "--out", "x"], "error: study spec missing.yaml not found"),
        (["run", "{spec}", "--out", "x", "--executor", "dask"], "error: unknown executor 'dask'; valid choices: local, ray"),
        (["run", "{spec}", "--out", "x", "--ray-address", "auto"], "are settings of the ray executor: add --executor ray"),
        (["results", "{study}", "--format", "parquet"], "error: --format parquet writes a file: add --output FILE.parquet"),
        (["results", "{study}", "--format", "xlsx"], "error: unknown format 'xlsx'; valid formats: table, csv, parquet"),
        (["results", "{study}", "--view", "best"], "error: unknown view 'best'; valid views: rounds, final, summary"),
        (["status", "{folder}"], "is not a study directory (no manifest.json)"),
    ],
)
def test_mistakes_are_one_clear_line_and_exit_code_2(cli_study, args, message, monkeypatch, capsys):
    spec, out, _ = cli_study
    spec_path = out.parent / "spec.yaml"
    args = [a.format(spec=spec_path, study=out, folder=out.parent) for a in args]
    monkeypatch.chdir(out.parent)
    assert message in main_refuses(monkeypatch, capsys, "study", *args)[1]
