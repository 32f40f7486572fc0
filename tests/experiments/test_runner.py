"""Running studies: local worker processes and a real local Ray instance, the run directory
files, failures that do not stop the study, skipping finished runs, results via DuckDB."""

import json
import os
import signal

import pandas as pd
import pytest

from robustal.config import make_config
from robustal.experiments import RunTask, StudySpec, plan_workers, run_directory, run_study, study_results, study_status
from robustal.experiments.executors import LocalExecutor
from robustal.loop import CHECKPOINT_FILE, CONFIG_FILE, ROUNDS_FILE, ActiveLearningJob, RoundRecord, records_frame
from run_helpers import STUDY_RUN
from study_helpers import tiny_spec

METRICS = ["labeled", "clean_accuracy", "robust_accuracy", "validation_score", "best_epoch"]


@pytest.fixture(scope="module")
def local_study(tmp_path_factory):
    """random and entropy (3 rounds each) plus a run that fails (budget beyond digits' 1,077 images)."""
    spec = StudySpec.from_dict(tiny_spec({"budget": [60, 5000], "acquisition": ["random", "entropy"]}))
    out = tmp_path_factory.mktemp("study")
    progress = []
    report = run_study(spec, out, workers=2, threads=1, on_progress=progress.append, poll_seconds=0.2)
    return spec, out, report, progress


def test_every_run_is_recorded_and_a_failed_run_does_not_stop_the_others(local_study):
    spec, out, report, progress = local_study
    configs = spec.expand()
    assert len(configs) == 4
    states = {(c.budget, c.acquisition): report.states[c.run_id()] for c in configs}
    assert states == {(60, "random"): "done", (60, "entropy"): "done", (5000, "random"): "failed", (5000, "entropy"): "failed"}
    for config in configs:
        run_dir = run_directory(out, config.run_id())
        if config.budget == 60:
            rounds = pd.read_parquet(run_dir / ROUNDS_FILE)
            assert list(rounds["labeled"]) == [20, 40, 60] and set(rounds["run_id"]) == {config.run_id()}
            assert (run_dir / CHECKPOINT_FILE).exists()
            assert json.loads((run_dir / CONFIG_FILE).read_text())["run_id"] == config.run_id()
            done = json.loads((run_dir / "done.json").read_text())
            assert done["rounds"] == 3 and done["labeled"] == 60
            assert done["robust_accuracy"] == rounds["robust_accuracy"].iloc[-1]
            assert not (run_dir / "error.json").exists()
        else:
            error = json.loads((run_dir / "error.json").read_text())
            assert error["error"] == "ConfigError: budget 5000 exceeds the 1077 training samples of digits"
            assert "Traceback" in error["traceback"] and "run_active_learning" in error["traceback"]
            assert report.errors[config.run_id()] == error["error"]
    assert (out / "study.yaml").exists()
    assert set(json.loads((out / "manifest.json").read_text())["runs"]) == {c.run_id() for c in configs}
    last = progress[-1]
    assert (last.done, last.failed, last.running, last.pending) == (2, 2, 0, 0)
    assert last.rounds_done == last.rounds_total == 3 + 3 + 250 + 250  # failed runs' rounds no longer expected
    assert all(earlier.rounds_done <= later.rounds_done for earlier, later in zip(progress, progress[1:]))


def test_status_lists_each_run_with_its_state(local_study):
    spec, out, report, _ = local_study
    status = study_status(out).set_index("run_id")
    assert status["state"].to_dict() == report.states
    finished = status[status["state"] == "done"]
    assert list(finished["rounds_done"]) == [3, 3] and list(finished["rounds_total"]) == [3, 3]
    assert status.loc[status["state"] == "failed", "error"].str.startswith("ConfigError: budget 5000").all()


def test_results_query_every_round_with_the_run_settings(local_study):
    spec, out, report, _ = local_study
    rounds = study_results(out)
    assert len(rounds) == 6 and set(rounds["state"]) == {"done"} and "selected" not in rounds
    assert set(rounds["budget"]) == {60} and set(rounds["eps"]) == {0.1}  # settings joined per run
    for run_id, group in rounds.groupby("run_id"):
        on_disk = pd.read_parquet(run_directory(out, run_id) / ROUNDS_FILE)
        assert list(group["round"]) == [0, 1, 2]
        pd.testing.assert_frame_equal(group[METRICS].reset_index(drop=True), on_disk[METRICS], check_dtype=False)
    with_selections = study_results(out, selections=True)
    assert all(len(selected) == 20 for selected in with_selections["selected"])

    final = study_results(out, view="final")
    assert sorted(final["acquisition"]) == ["entropy", "random"] and set(final["round"]) == {2}
    summary = study_results(out, view="summary").set_index("acquisition")
    assert set(summary["runs"]) == {1}
    for row in final.itertuples():
        assert summary.loc[row.acquisition, "robust_accuracy_mean"] == pytest.approx(row.robust_accuracy)
        assert summary.loc[row.acquisition, "clean_accuracy_mean"] == pytest.approx(row.clean_accuracy)


def test_running_again_skips_finished_runs_and_retries_failed_ones(local_study):
    spec, out, _, _ = local_study
    done_files = sorted(out.glob("runs/*/done.json"))
    before = {path: path.stat().st_mtime_ns for path in done_files}
    report = run_study(spec, out, workers=2, threads=1, poll_seconds=0.2)
    assert sorted(report.states.values()) == ["failed", "failed", "skipped", "skipped"]
    assert {path: path.stat().st_mtime_ns for path in done_files} == before


def test_plan_workers_splits_the_cores():
    assert plan_workers(8, None, None) == (8, 1)
    assert plan_workers(8, 2, None) == (2, 4)
    assert plan_workers(8, None, 4) == (2, 4)
    assert plan_workers(2, 4, None) == (4, 1)
    assert plan_workers(8, 3, 1) == (3, 1)


def test_a_killed_worker_is_retried_and_resumes_else_its_crash_is_reported(tmp_path):
    config = make_config(**STUDY_RUN)
    for retries, expected in [(0, "was killed by SIGKILL"), (1, None)]:
        run_dir = str(tmp_path / f"retries-{retries}")
        executor = LocalExecutor(workers=1, threads=1, retries=retries)
        try:
            executor.start(RunTask(ActiveLearningJob(config), run_dir, threads=1))
            os.kill(executor._processes[run_dir].pid, signal.SIGKILL)  # long before it can finish a run
            ended = []
            while not ended:
                ended = executor.wait(timeout=1.0)
        finally:
            executor.close()
        (finished_dir, crash) = ended[0]
        assert finished_dir == run_dir
        if expected is None:
            assert crash is None and os.path.exists(os.path.join(run_dir, "done.json"))
        else:
            assert expected in crash and "tried 1x" in crash


@pytest.mark.slow
def test_ray_executor_runs_the_same_runs_with_the_same_results(local_study, tmp_path):
    spec, local_out, _, _ = local_study
    tiny = StudySpec.from_dict(tiny_spec())  # the two runs of local_study with budget 60
    report = run_study(tiny, tmp_path, executor="ray", workers=2, threads=1, poll_seconds=0.2)
    assert sorted(report.states.values()) == ["done", "done"]
    ray_rounds = study_results(tmp_path, selections=True)
    local_rounds = study_results(local_out, selections=True)
    local_rounds = local_rounds[local_rounds["run_id"].isin(ray_rounds["run_id"])].reset_index(drop=True)
    assert len(ray_rounds) == 6
    pd.testing.assert_frame_equal(ray_rounds[["run_id", "round", *METRICS]], local_rounds[["run_id", "round", *METRICS]])
    assert [list(s) for s in ray_rounds["selected"]] == [list(s) for s in local_rounds["selected"]]


def test_results_keep_settings_that_only_some_runs_store(tmp_path):
    # runs of one study may store different settings (e.g. ones added in a later version)
    first = make_config(**STUDY_RUN)
    second = make_config(**{**STUDY_RUN, "seed": 1})
    manifest = {first.run_id(): first.resolved_settings(), second.run_id(): {**second.resolved_settings(), "new_setting": 7}}
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "mixed", "runs": manifest}))
    for config in (first, second):
        run_dir = run_directory(tmp_path, config.run_id())
        run_dir.mkdir(parents=True)
        record = RoundRecord(
            round=0, labeled=20, clean_accuracy=0.5, robust_accuracy=0.25, validation_score=0.3, best_epoch=0,
            train_seconds=1.0, select_seconds=0.0, eval_seconds=0.5, selected=list(range(20)),
        )  # fmt: skip
        records_frame(config, [record]).to_parquet(run_dir / ROUNDS_FILE)
    rounds = study_results(tmp_path).set_index("seed")
    assert pd.isna(rounds.loc[0, "new_setting"]) and rounds.loc[1, "new_setting"] == 7
    assert list(rounds["state"]) == ["pending", "pending"]  # no checkpoint: nothing to resume from
