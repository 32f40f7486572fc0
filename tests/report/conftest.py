"""Fixtures of the report tests: one small finished study and its report, built once per
test session (per xdist worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import invoke
from robustal.experiments import RunTask, StudySpec, execute_run, run_directory
from robustal.experiments.store import write_study
from robustal.loop import ActiveLearningJob
from study_helpers import tiny_spec

# 2 functions x 2 training regimes x 2 seeds = 8 runs of 3 rounds (20 -> 60 labels) on digits;
# 4 epochs at lr 0.01 so that the models learn something (60-90 % accuracy) in about a second.
STUDY_GRID = {"training": ["standard", "pgd"], "acquisition": ["random", "entropy"], "seed": [0, 1]}
STUDY_SETTINGS = dict(epochs=4, lr=0.01, batch_size=20)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """A finished study directory, written exactly as `robustal study run` writes it (spec,
    manifest, one directory per run with config.json, rounds.parquet, checkpoint.pt, done.json:
    `write_study` then `execute_run` per run, as `run_study` does) but run in this process:
    a worker process per run would add seconds of start-up to each second-long run."""
    spec = StudySpec.from_dict(tiny_spec(STUDY_GRID, **STUDY_SETTINGS))
    study_dir = tmp_path_factory.mktemp("report-study") / "study"
    configs = spec.expand()
    write_study(study_dir, spec.to_dict(), configs)
    for config in configs:
        assert execute_run(RunTask(ActiveLearningJob(config), str(run_directory(study_dir, config.run_id())))) == "done"
    return study_dir


@pytest.fixture(scope="session")
def tiny_report(tiny_study, tmp_path_factory) -> Path:
    """The page of `tiny_study`'s report written by ``robustal report STUDY -o OUT``."""
    out = tmp_path_factory.mktemp("report") / "out"
    result = invoke("report", tiny_study, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"report -> {out / 'index.html'}" in " ".join(result.output.split())
    return out / "index.html"
