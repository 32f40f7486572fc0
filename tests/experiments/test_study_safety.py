"""A study survives damaged files and careless commands: a damaged run is flagged while the
others stay usable and the next `study run` repairs it; one directory holds one study written by
one process; a huge grid asks before it starts; a log gets a line per finished run."""

import os
import shutil
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from cli_helpers import invoke, main_refuses, start_robustal
from robustal.errors import ConfigError, RobustALError
from robustal.experiments import (
    DamagedFileWarning,
    StudySpec,
    retrain_directory,
    retraining_results,
    retraining_status,
    run_directory,
    run_study,
    study_results,
    study_status,
)
from robustal.loop import CHECKPOINT_FILE, ROUNDS_FILE, atomic_write
from robustal.report import write_report
from robustal.retraining import RESULTS_FILE
from run_helpers import RETRAIN
from study_helpers import tiny_spec, write_spec

COMPARED = ["round", "labeled", "clean_accuracy", "robust_accuracy", "validation_score", "best_epoch", "selected"]
RETRAIN_SECTION = {"acquisition": ["random"], "budgets": [5], "settings": RETRAIN}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """random and entropy (3 rounds each) and one retraining job from each."""
    spec = StudySpec.from_dict({**tiny_spec(), "retrain": RETRAIN_SECTION})
    out = tmp_path_factory.mktemp("safety") / "study"
    report = run_study(spec, out, workers=1, threads=1, poll_seconds=0.2)
    assert set(report.states.values()) == {"done"}
    return spec, out


@pytest.fixture
def copy(study, tmp_path):
    """A copy of the finished study to damage, and the run and job directories in it."""
    spec, out = study
    copied = tmp_path / "study"
    shutil.copytree(out, copied)
    runs = [run_directory(copied, config.run_id()) for config in spec.expand()]
    jobs = [retrain_directory(copied, job.job_id) for job in spec.expand_retraining()]
    return spec, copied, runs, jobs


def truncate(path, keep=100):
    path.write_bytes(path.read_bytes()[:keep])


def test_a_damaged_run_is_flagged_and_every_other_run_stays_usable(copy, tmp_path):
    spec, out, (damaged, intact), jobs = copy
    truncate(damaged / ROUNDS_FILE)
    truncate(jobs[0] / RESULTS_FILE)
    status = study_status(out).set_index("run_id")
    assert status.loc[damaged.name, "state"] == "damaged" and status.loc[intact.name, "state"] == "done"
    error = status.loc[damaged.name, "error"]
    assert str(damaged / ROUNDS_FILE) in error and f"robustal study run {out / 'study.yaml'} --out {out}" in error
    with pytest.warns(DamagedFileWarning, match=str(damaged / ROUNDS_FILE)):
        rounds = study_results(out)
    assert set(rounds["run_id"]) == {intact.name} and len(rounds) == 3
    assert retraining_status(out).set_index("job_id").loc[jobs[0].name, "state"] == "damaged"
    with pytest.warns(DamagedFileWarning, match=str(jobs[0] / RESULTS_FILE)):
        assert set(retraining_results(out)["source_run_id"]) == {intact.name}
    with pytest.warns(DamagedFileWarning):
        page = write_report(out, tmp_path / "report")
    assert "1 finished run of 2" in page.read_text()
    result = invoke("study", "status", out)
    assert result.exit_code == 0 and "1 done, 0 partial, 0 failed, 0 pending, 1 damaged" in result.output
    assert f"damaged {damaged.name}" in result.output


def test_rerunning_repairs_damaged_runs_and_jobs(study, copy):
    spec, out, (rebuilt, recomputed), jobs = copy
    _, original = study
    truncate(rebuilt / ROUNDS_FILE)  # a finished run: its checkpoint holds every round
    truncate(recomputed / ROUNDS_FILE)
    (recomputed / CHECKPOINT_FILE).write_bytes(b"")  # and its checkpoint is damaged too: computed again
    truncate(jobs[0] / RESULTS_FILE)
    report = run_study(spec, out, workers=1, threads=1, poll_seconds=0.2)
    assert report.states == {
        rebuilt.name: "skipped", recomputed.name: "done", jobs[0].name: "done", jobs[1].name: "skipped"
    }  # fmt: skip
    assert set(report.repaired) == {rebuilt.name, recomputed.name, jobs[0].name}
    assert "rebuilt it from checkpoint.pt" in report.repaired[rebuilt.name]
    assert (rebuilt / "rounds.parquet.damaged").exists() and (recomputed / "checkpoint.pt.damaged").exists()
    assert set(study_status(out)["state"]) == {"done"} and set(retraining_status(out)["state"]) == {"done"}
    for run_dir in (rebuilt, recomputed):  # the same numbers as before the damage
        expected = pd.read_parquet(run_directory(original, run_dir.name) / ROUNDS_FILE)
        repaired = pd.read_parquet(run_dir / ROUNDS_FILE)
        pd.testing.assert_frame_equal(repaired[COMPARED[:-1]], expected[COMPARED[:-1]])
        assert [list(s) for s in repaired["selected"]] == [list(s) for s in expected["selected"]]
    pd.testing.assert_frame_equal(retraining_results(out), retraining_results(original))


def test_a_different_spec_is_refused_naming_the_study_there(copy):
    spec, out, _, _ = copy
    manifest = (out / "manifest.json").read_text()
    other = StudySpec.from_dict({**tiny_spec({"acquisition": ["margin"]}), "name": "other"})
    with pytest.raises(ConfigError, match=f"{out} holds the study 'tiny' .* differs from it in name, grid, retrain"):
        run_study(other, out, workers=1, threads=1)
    assert (out / "manifest.json").read_text() == manifest  # nothing merged


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    holder = (
        "import sys, time; from pathlib import Path; from robustal.experiments.store import study_lock\n"
        "with study_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(120)"
    )
    (tmp_path / "study").mkdir()
    process = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path / "study")], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        with pytest.raises(RobustALError, match=f"another `robustal study run` is writing to .*pid {process.pid} on {socket.gethostname()}, started "):
            run_study(StudySpec.from_dict(tiny_spec()), tmp_path / "study", workers=1, threads=1)
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    assert not (tmp_path / "study" / "manifest.json").exists()


def test_atomic_writes_use_unique_temporary_names_and_leave_none_behind(tmp_path):
    target, temporaries = tmp_path / "rounds.parquet", []

    def write(temporary):
        temporaries.append(temporary)
        temporary.write_text("rows")

    atomic_write(target, write)
    atomic_write(target, write)
    assert temporaries[0] != temporaries[1] and {t.parent for t in temporaries} == {tmp_path}
    assert str(os.getpid()) in temporaries[0].name

    def fail(temporary):
        temporary.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, fail)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["rounds.parquet"] and target.read_text() == "rows"


def test_a_large_grid_is_counted_and_needs_yes_before_anything_runs(tmp_path, monkeypatch, capsys):
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec({"acquisition": ["random"], "seed": list(range(501))}))
    out, err = main_refuses(monkeypatch, capsys, "study", "run", spec, "--out", tmp_path / "study")
    assert "501 runs (501 to do): 1503 rounds to compute" in out
    assert "501 runs and retraining jobs to compute (more than 500): add --yes to start them" in err
    assert not (tmp_path / "study" / "manifest.json").exists() and not (tmp_path / "study" / "runs").exists()


def test_yes_starts_a_large_grid(tmp_path, monkeypatch):
    monkeypatch.setattr("robustal.cli.study.CONFIRM_ABOVE", 1)
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec())
    arguments = ["study", "run", spec, "--out", tmp_path / "study", "--workers", "1"]
    assert "add --yes to start them" in str(invoke(*arguments).exception)
    result = invoke(*arguments, "--yes")
    assert result.exit_code == 0, result.output
    assert "2 runs: 2 done" in result.output


def test_a_log_gets_a_line_per_run_as_it_finishes(tmp_path):
    spec = tiny_spec({"acquisition": ["random", "entropy"]})
    first, second = StudySpec.from_dict(spec).expand()
    spec_path = write_spec(tmp_path / "spec.yaml", spec)
    process = start_robustal(
        "study", "run", spec_path, "--out", tmp_path / "study", "--workers", "1", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        lines = [process.stdout.readline()]
        while not lines[-1].startswith("done ") and lines[-1]:
            lines.append(process.stdout.readline())
        running = process.poll() is None and not (run_directory(tmp_path / "study", second.run_id()) / "done.json").exists()
        rest, errors = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, errors
    assert running, "the line of the first run came only when the study ended"
    assert lines[0].startswith("2 runs (2 to do): 6 rounds to compute; no time estimate")
    summary = pd.read_json(run_directory(tmp_path / "study", first.run_id()) / "done.json", typ="series")
    assert lines[-1].startswith(
        f"done {first.run_id()} random seed 0: accuracy {100 * summary['clean_accuracy']:.2f}%, "
        f"robustness {100 * summary['robust_accuracy']:.2f}%, "
    )
    assert f"done {second.run_id()} entropy seed 0: accuracy" in rest
