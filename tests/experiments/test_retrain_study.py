"""The `retrain:` section of a study spec: retraining jobs from the study's runs, run by the
study runner (skipped when done, resumed, failures recorded), their results and the CLI."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cli_helpers import invoke as invoke_cli
from cli_helpers import main_refuses, run_robustal
from html_tables import parse_page
from robustal.acquisition import available_acquisitions
from robustal.errors import ConfigError
from robustal.experiments import (
    RETRAINING_COLUMNS,
    StudySpec,
    load_study_spec,
    retrain_directory,
    retraining_results,
    retraining_status,
    run_study,
    study_results,
)
from robustal.loop import CONFIG_FILE
from robustal.retraining import RESULTS_FILE, make_retrain_config
from run_helpers import RETRAIN
from study_helpers import tiny_spec, write_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def retrain_spec(grid: dict, retrain: dict, **settings) -> dict:
    """A tiny study spec (study_helpers.tiny_spec) with a `retrain` section."""
    return {**tiny_spec(grid, **{"acquisition": "random", "budget": 40, **settings}), "retrain": retrain}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two good source runs (standard, pgd) and two that fail (budget beyond digits' 1,077
    images); 2 functions x 2 budgets x 2 seeds of retraining from each."""
    retrain = {"acquisition": ["random", "dre"], "budgets": [5, 10], "seeds": [0, 1], "settings": RETRAIN}
    spec = StudySpec.from_dict(retrain_spec({"training": ["standard", "pgd"], "budget": [40, 5000]}, retrain))
    out = tmp_path_factory.mktemp("retrain-study") / "study"
    report = run_study(spec, out, workers=2, threads=1, poll_seconds=0.2)
    return spec, out, report


def test_results_have_one_row_per_source_function_budget_and_seed(study):
    spec, out, _ = study
    runs = {config.run_id(): config for config in spec.expand()}
    good = [run_id for run_id, config in runs.items() if config.budget == 40]
    results = retraining_results(out)
    assert list(results.columns) == list(RETRAINING_COLUMNS)
    assert results.dtypes.astype(str).to_dict() == RETRAINING_COLUMNS
    keys = {(r.source_run_id, r.acquisition, r.budget, r.seed) for r in results.itertuples()}
    assert len(results) == len(keys) == 16
    assert keys == {(s, a, b, seed) for s in good for a in ("random", "dre") for b in (5, 10) for seed in (0, 1)}
    for row in results.itertuples():
        assert row.training == runs[row.source_run_id].training  # the source run's regime
        assert (row.dataset, row.model) == ("digits", "small_cnn")
    accuracies = results[["clean_before", "robust_before", "clean_after", "robust_after"]].to_numpy()
    assert ((0 <= accuracies) & (accuracies <= 1)).all()
    assert np.allclose(results["robust_gain"], results["robust_after"] - results["robust_before"])
    # every job of a source starts from the same model, evaluated on the same split
    assert (results.groupby("source_run_id")["clean_before"].nunique() == 1).all()


def test_each_job_is_stored_under_its_stable_id(study):
    spec, out, _ = study
    jobs = spec.expand_retraining()
    assert len(jobs) == 4 * 2 * 2
    for job in jobs:
        expected = make_retrain_config(
            checkpoint=f"runs/{job.source_run_id}", acquisition=job.config.acquisition, budgets=[5, 10],
            seed=job.config.seed, **RETRAIN,
        )  # fmt: skip
        assert job.job_id == expected.run_id()  # the id of a path relative to the study: it may move
        job_dir = retrain_directory(out, job.job_id)
        if (job_dir / "done.json").exists():
            stored = json.loads((job_dir / CONFIG_FILE).read_text())
            assert (stored["run_id"], stored["source_run_id"]) == (job.job_id, job.source_run_id)
            assert list(pd.read_parquet(job_dir / RESULTS_FILE)["budget"]) == [5, 10]
            assert json.loads((job_dir / "done.json").read_text())["budgets"] == ["5", "10"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["retraining"]) == {job.job_id for job in jobs}
    assert "retrain" in yaml.safe_load((out / "study.yaml").read_text())


def test_jobs_of_a_failed_source_run_fail_and_the_others_finish(study):
    spec, out, report = study
    failed_runs = {c.run_id() for c in spec.expand() if c.budget == 5000}
    for job in spec.expand_retraining():
        state = report.states[job.job_id]
        if job.source_run_id in failed_runs:
            assert state == "failed"
            assert report.errors[job.job_id] == (
                f"its source run {job.source_run_id} failed: ConfigError: budget 5000 exceeds the 1077 training "
                "samples of digits"
            )
        else:
            assert state == "done"
    assert (report.count("done", retraining=True), report.count("failed", retraining=True)) == (8, 8)
    assert (report.count("done", retraining=False), report.count("failed", retraining=False)) == (2, 2)
    status = retraining_status(out)
    assert sorted(status["state"].value_counts().items()) == [("done", 8), ("failed", 8)]
    done = status[status["state"] == "done"]
    assert set(done["budgets_done"]) == set(done["budgets_total"]) == {2}
    assert status.loc[status["state"] == "failed", "error"].str.startswith("its source run").all()


def _files(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in sorted(folder.rglob("*")) if path.is_file()}


def test_rerunning_a_moved_study_computes_nothing_new(study, tmp_path):
    spec, out, _ = study
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)  # job ids do not depend on where the study is
    done = [p.parent for p in [*moved.glob("runs/*/done.json"), *moved.glob("retrain/*/done.json")]]
    before = {folder: _files(folder) for folder in done}
    report = run_study(spec, moved, workers=2, threads=1, poll_seconds=0.2)
    assert report.count("skipped", retraining=True) == 8 and report.count("skipped", retraining=False) == 2
    assert report.count("done") == 0  # the failed ones were tried again and failed again
    assert {folder: _files(folder) for folder in done} == before
    pd.testing.assert_frame_equal(retraining_results(moved), retraining_results(out))


def test_a_study_written_under_earlier_ids_is_adopted_without_computing_anything(study, tmp_path):
    # robustal 0.1 put settings at their defaults into ids: simulate such a study by renaming every
    # finished run and job to the digest of its full settings, then run the spec again
    from robustal.config import stable_id
    from robustal.retraining import RetrainConfig
    from robustal.rundir import read_config, rename_job

    spec, out, _ = study
    old = tmp_path / "old"
    shutil.copytree(out, old)
    done = [p.parent for p in [*old.glob("runs/*/done.json"), *old.glob("retrain/*/done.json")]]
    earlier = {}
    for folder in sorted(done, key=lambda f: f.parent.name != "runs"):  # runs first: jobs name them
        config = read_config(folder)["config"]
        settings = RetrainConfig(**config).resolved_settings() if folder.parent.name == "retrain" else config
        earlier[folder.name] = stable_id({**settings, "seed": settings["seed"], "earlier": True})
        rename_job(folder, folder.with_name(earlier[folder.name]), earlier)
    for job in old.glob("retrain/*/config.json"):  # as 0.1 stored it: the source run under its earlier id
        payload = json.loads(job.read_text())
        source = Path(payload["config"]["checkpoint"])
        payload["config"]["checkpoint"] = str(source.with_name(earlier.get(source.name, source.name)))
        job.write_text(json.dumps(payload))
    assert not {folder.name for folder in done} & {path.name for path in old.glob("*/*")}
    report = run_study(spec, old, workers=2, threads=1, poll_seconds=0.2)
    assert report.count("skipped", retraining=True) == 8 and report.count("skipped", retraining=False) == 2
    assert len([m for m in report.repaired.values() if "earlier version's id" in m]) == 10
    assert {path.name for path in old.glob("*/*")} >= {folder.name for folder in done}
    pd.testing.assert_frame_equal(retraining_results(old), retraining_results(out))
    assert study_results(old).equals(study_results(out))


def test_an_interrupted_job_resumes_at_its_next_budget_with_the_same_numbers(study, tmp_path):
    spec, out, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    job = next(job for job in spec.expand_retraining() if (retrain_directory(out, job.job_id) / "done.json").exists())
    job_dir = retrain_directory(copy, job.job_id)
    full = pd.read_parquet(job_dir / RESULTS_FILE)
    full.iloc[:1].to_parquet(job_dir / RESULTS_FILE, index=False)  # as if killed while retraining budget 10
    (job_dir / "done.json").unlink()
    assert retraining_status(copy).set_index("job_id").loc[job.job_id, "state"] == "partial"
    report = run_study(spec, copy, workers=1, threads=1, poll_seconds=0.2)
    assert report.states[job.job_id] == "done" and report.count("done") == 1
    resumed = pd.read_parquet(job_dir / RESULTS_FILE)
    assert resumed["seconds"].iloc[0] == full["seconds"].iloc[0]  # budget 5 was not recomputed
    compared = ["budget", "clean_accuracy_before", "robust_accuracy_before", "clean_accuracy_after", "robust_accuracy_after"]
    pd.testing.assert_frame_equal(resumed[compared], full[compared])


def test_a_study_without_retraining_has_an_empty_results_frame(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "x", "runs": {"r": {"training": "pgd"}}}))
    results = retraining_results(tmp_path)
    assert results.empty and list(results.columns) == list(RETRAINING_COLUMNS)
    assert retraining_status(tmp_path).empty
    with pytest.raises(ConfigError, match="is not a study directory"):
        retraining_results(tmp_path / "nothing")


# --- the CLI ------------------------------------------------------------------------------------


def invoke(*args, exit_code=0):
    result = invoke_cli("study", *args)
    assert result.exit_code == exit_code, result.output
    return " ".join(result.output.split())  # rich wraps long lines


@pytest.fixture(scope="module")
def cli_study(tmp_path_factory):
    """`robustal study run` (a subprocess) of one run and 2 functions x 2 budgets of retraining."""
    folder = tmp_path_factory.mktemp("cli-retrain")
    retrain = {"acquisition": ["random", "entropy"], "budgets": ["5", "10"], "settings": RETRAIN}
    spec = retrain_spec({"seed": [0]}, retrain)
    write_spec(folder / "spec.yaml", spec)
    result = run_robustal(
        "study", "run", folder / "spec.yaml", "--out", folder / "study", "--workers", "2", timeout=300,
        env={"COLUMNS": "200"},  # the whole progress line
    )  # fmt: skip
    return spec, folder, result


def test_cli_runs_retraining_after_the_runs(cli_study):
    _, folder, result = cli_study
    assert result.returncode == 0, result.stderr
    output = " ".join(result.stdout.split())
    assert "1 run: 1 done, 0 skipped (finished before), 0 failed" in output
    assert "2 retraining jobs: 2 done, 0 skipped (finished before), 0 failed" in output
    assert "runs+jobs: 3 done, 0 running, 0 failed, 0 pending" in output  # the progress display
    assert f"robustal study results {folder / 'study'} [--retraining]" in output


def test_cli_status_and_results_include_retraining(cli_study, tmp_path):
    _, folder, _ = cli_study
    out = folder / "study"
    status = invoke("status", out)
    assert "1 run: 1 done, 0 partial, 0 failed, 0 pending" in status
    assert "2 retraining jobs: 2 done, 0 partial, 0 failed, 0 pending" in status
    exported = invoke_cli("study", "results", out, "--retraining", "--format", "csv")
    csv = pd.read_csv(io.StringIO(exported.output))
    expected = retraining_results(out)
    assert list(csv.columns) == list(RETRAINING_COLUMNS) and len(csv) == 4
    pd.testing.assert_frame_equal(csv, expected, check_dtype=False)
    invoke("results", out, "--retraining", "--format", "parquet", "--output", tmp_path / "r.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "r.parquet"), expected, check_dtype=False)
    table = invoke("results", out, "--retraining")
    assert "retraining results of" in table and "entropy" in table
    assert f"same in every row: source_run_id={expected['source_run_id'].iloc[0]}" in table  # one source run


def test_cli_records_a_failing_retraining_job_and_keeps_what_was_computed(cli_study, tmp_path):
    spec, folder, _ = cli_study
    out = tmp_path / "study"
    shutil.copytree(folder / "study", out)
    spec["retrain"]["budgets"] = ["5", "10", "500"]  # a new budget: the jobs run again, and it exceeds the pool
    more = write_spec(tmp_path / "more.yaml", spec)  # the same study with more: --extend
    output = invoke("run", more, "--out", out, "--workers", "2", "--extend", exit_code=1)
    assert "1 run: 0 done, 1 skipped (finished before), 0 failed" in output
    assert "2 retraining jobs: 0 done, 0 skipped (finished before), 2 failed" in output
    assert "ConfigError: budget 500 exceeds the 180 candidates" in output
    status = invoke("status", out)
    assert "2 retraining jobs: 0 done, 0 partial, 2 failed, 0 pending" in status
    assert status.count("failed retraining") == 2
    error = json.loads(next(out.glob("retrain/*/error.json")).read_text())
    assert "Traceback" in error["traceback"] and "run_retraining" in error["traceback"]
    assert len(retraining_results(out)) == 4  # budgets 5 and 10 stay


@pytest.mark.parametrize(
    "args, message",
    [
        (["results", "{study}", "--retraining", "--view", "final"], "leave them out with --retraining"),
        (["results", "{study}", "--retraining", "--selections"], "leave them out with --retraining"),
    ],
)
def test_cli_mistakes_with_retraining_are_one_clear_line(cli_study, args, message, monkeypatch, capsys):
    _, folder, _ = cli_study
    _, error = main_refuses(monkeypatch, capsys, "study", *[a.format(study=folder / "study") for a in args])
    assert message in error


# --- the spec -----------------------------------------------------------------------------------


def test_retrain_section_defaults_and_source_filter():
    spec = StudySpec.from_dict(retrain_spec({"training": ["standard", "pgd"], "seed": [0, 1]}, {"budgets": "1%,2%"}))
    jobs = spec.expand_retraining()
    assert len(jobs) == 4 * len(available_acquisitions())  # every function, seed 0, from every run
    assert {job.config.seed for job in jobs} == {0} and {job.config.budgets for job in jobs} == {("1%", "2%")}
    filtered = {**spec.to_dict(), "retrain": {"from": {"training": "standard"}, "acquisition": ["dre"], "budgets": [5], "seeds": [3, 4]}}
    runs = {c.run_id(): c for c in StudySpec.from_dict(filtered).expand()}
    jobs = StudySpec.from_dict(filtered).expand_retraining()
    assert [(runs[j.source_run_id].training, runs[j.source_run_id].seed, j.config.seed) for j in jobs] == [
        ("standard", 0, 3), ("standard", 0, 4), ("standard", 1, 3), ("standard", 1, 4),
    ]  # fmt: skip
    assert StudySpec.from_dict(StudySpec.from_dict(filtered).to_dict()) == StudySpec.from_dict(filtered)
    assert StudySpec.from_dict(tiny_spec()).expand_retraining() == []


def test_examples_retrain_sections():
    quick = load_study_spec(EXAMPLES / "quick.yaml")
    jobs = quick.expand_retraining()
    assert jobs and {job.config.acquisition for job in jobs} <= {"random", "entropy", "dre"}
    paper = load_study_spec(EXAMPLES / "paper-mnist.yaml")
    jobs = paper.expand_retraining()
    assert {job.config.acquisition for job in jobs} == set(available_acquisitions())
    assert jobs[0].config.budgets == tuple(f"{p}%" for p in range(1, 11))


@pytest.mark.parametrize(
    "retrain, message",
    [
        ({"budgets": [5], "budget": 3}, "unknown key 'budget' in `retrain` of study spec; valid keys: from, acquisition, budgets, seeds, settings"),
        ({"budgets": [5], "acquisition": ["dre", "entropyy"]}, "retrain.acquisition: unknown acquisition function 'entropyy'; valid choices: " + ", ".join(available_acquisitions())),
        ({"acquisition": ["dre"]}, "`retrain` of study spec has no `budgets`: list counts or percentages"),
        ({"budgets": ["0%"]}, "retrain.budgets: budget '0%': a percentage of the candidate pool must be in (0%, 100%]"),
        ({"budgets": [5], "settings": {"epoch": 1}}, "unknown setting 'epoch' in `retrain.settings`; valid settings: acquisition_options, augment, batch_size,"),
        ({"budgets": [5], "settings": {"seed": 1}}, "`seed` cannot be set in `retrain.settings`: list the seeds under `retrain.seeds`"),
        ({"budgets": [5], "from": {"trainin": "pgd"}}, "unknown setting 'trainin' in `retrain.from`; valid settings: acquisition,"),
        ({"budgets": [5], "seeds": [-1]}, "retrain.seeds must be non-negative whole numbers, not -1"),
        ([5], "`retrain` of study spec must be a mapping with keys from, acquisition, budgets, seeds, settings, not list"),
        ({"budgets": [5], "from": ["pgd"]}, "`from` in `retrain` of study spec must be a mapping of setting names to values"),
    ],
)
def test_malformed_retrain_sections_say_what_is_wrong(retrain, message):
    with pytest.raises(ConfigError) as error:
        StudySpec.from_dict({**tiny_spec(), "retrain": retrain})
    assert message in str(error.value)


@pytest.mark.parametrize(
    "retrain, message",
    [
        ({"budgets": [5], "from": {"training": "pgdd"}}, "retrain.from matches none of the study's 2 runs (in the grid, training is one of 'pgd')"),
        ({"budgets": [5], "settings": {"epochs": 0}}, f"retraining ({available_acquisitions()[0]}, seed 0): invalid retraining settings: epochs: Input should be greater than or equal to 1"),  # the first function's job fails first
        ({"budgets": [5], "acquisition": ["dre"], "settings": {"acquisition_options": {"binz": 3}}}, "invalid options for acquisition 'dre'"),
    ],
)
def test_invalid_retraining_fails_before_anything_runs(retrain, message):
    with pytest.raises(ConfigError) as error:
        StudySpec.from_dict({**tiny_spec(), "retrain": retrain}).expand_retraining()
    assert message in str(error.value)


def test_the_report_shows_the_gains_of_the_study_s_retraining_jobs(study, tmp_path):
    from robustal.report import write_report
    from robustal.report.results import function_label

    _, out, _ = study
    page = parse_page(write_report(out, tmp_path / "report").read_text())
    results = retraining_results(out)
    # rows are functions with their options, as the report labels them ("dre (quota=paper)")
    results["acquisition"] = [function_label(a, o) for a, o in zip(results["acquisition"], results["acquisition_options"])]
    for index, (training, rows) in enumerate(results.groupby("training", sort=False)):
        table = next(t for t in page.tables.values() if t.caption and f"{training} training" in t.caption
                     and t.head[0][0].text == "function")  # fmt: skip
        for (acquisition, budget), gains in rows.groupby(["acquisition", "budget"])["robust_gain"]:
            column = [cell.text for cell in table.head[0]].index(f"budget {budget}")
            assert table.row(acquisition)[column].text.startswith(f"{100 * gains.mean():+.2f} ± ")


def test_with_one_worker_a_retraining_job_runs_right_after_its_source_run(tmp_path):
    retrain = {"from": {"training": "standard"}, "acquisition": ["random"], "budgets": [5], "settings": RETRAIN}
    spec = StudySpec.from_dict(retrain_spec({"training": ["standard", "pgd"]}, retrain, epochs=1))
    run_study(spec, tmp_path, workers=1, threads=1, poll_seconds=0.05)
    standard, pgd = spec.expand()
    (job,) = spec.expand_retraining()
    finished = {
        name: (directory / "done.json").stat().st_mtime_ns
        for name, directory in [
            ("standard", tmp_path / "runs" / standard.run_id()),
            ("retraining", retrain_directory(tmp_path, job.job_id)),
            ("pgd", tmp_path / "runs" / pgd.run_id()),
        ]
    }
    assert finished["standard"] < finished["retraining"] < finished["pgd"]
