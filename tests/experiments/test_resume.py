"""A study killed with SIGKILL in the middle of a run resumes from its last finished round and
ends with exactly the results of an uninterrupted run."""

import os
import signal
import subprocess
import time

import pandas as pd

from cli_helpers import run_robustal, start_robustal
from robustal.experiments import StudySpec, run_directory
from robustal.loop import CHECKPOINT_FILE, ROUNDS_FILE, run_active_learning
from run_helpers import STUDY_RUN
from study_helpers import write_spec

# 13 rounds of growing training sets: seconds of work after the first checkpoint appears.
SETTINGS = dict(STUDY_RUN, acquisition="entropy", budget=260, epochs=3, batch_size=20, seed=5)
COMPARED = ["round", "labeled", "clean_accuracy", "robust_accuracy", "validation_score", "best_epoch"]


def study_run_arguments(spec_path, out):
    return ["study", "run", spec_path, "--out", out, "--workers", "1", "--threads", "1"]


def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path):
    grid = {key: [SETTINGS[key]] for key in ("acquisition", "seed")}
    spec = {"settings": {k: v for k, v in SETTINGS.items() if k not in grid}, "grid": grid}
    (config,) = StudySpec.from_dict(spec).expand()
    spec_path, out = write_spec(tmp_path / "spec.yaml", spec), tmp_path / "study"
    run_dir = run_directory(out, config.run_id())

    process = start_robustal(
        *study_run_arguments(spec_path, out), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    killed = False
    try:
        while not (run_dir / CHECKPOINT_FILE).exists():  # round 0 is on disk once its checkpoint is
            assert process.poll() is None, f"the study exited before its first round: {process.stderr.read()}"
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)  # the study process and its worker, in the middle of a round
        killed = True
    finally:
        if not killed and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    interrupted = pd.read_parquet(run_dir / ROUNDS_FILE)
    assert not (run_dir / "done.json").exists() and 1 <= len(interrupted) < config.rounds + 1, (
        f"the run finished {len(interrupted)} of {config.rounds + 1} rounds before it was killed: make it longer"
    )

    rerun = run_robustal(*study_run_arguments(spec_path, out), timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 run: 1 done, 0 skipped (finished before), 0 failed" in rerun.stdout
    resumed = pd.read_parquet(run_dir / ROUNDS_FILE)
    assert (run_dir / "done.json").exists()

    reference = run_active_learning(config, tmp_path / "uninterrupted").table()
    pd.testing.assert_frame_equal(resumed[COMPARED], reference[COMPARED])
    assert [list(s) for s in resumed["selected"]] == [list(s) for s in reference["selected"]]
    # the rounds finished before the kill were kept, not computed again (their timings are the same)
    kept = len(interrupted)
    assert list(resumed["train_seconds"][:kept]) == list(interrupted["train_seconds"])
