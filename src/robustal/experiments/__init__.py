"""Studies: grids of runs with stable ids, retraining jobs that start from their checkpoints,
a resumable runner on local processes or Ray, and the results store (one directory per run or
job, Parquet files queried with DuckDB).

>>> from robustal.experiments import load_study_spec, retraining_results, run_study, study_results
>>> report = run_study(load_study_spec("examples/quick.yaml"), "studies/quick")  # doctest: +SKIP
>>> study_results("studies/quick", view="summary")  # doctest: +SKIP
>>> retraining_results("studies/quick")  # doctest: +SKIP
"""

from robustal.experiments.executors import EXECUTORS, RunTask, available_cores, execute_run, plan_workers
from robustal.experiments.runner import JobOutcome, StudyPlan, StudyProgress, StudyReport, run_study
from robustal.experiments.spec import RetrainJob, RetrainSpec, StudySpec, load_study_spec
from robustal.experiments.store import (
    RETRAINING_COLUMNS,
    STATES,
    VIEWS,
    DamagedFileWarning,
    retrain_directory,
    retraining_results,
    retraining_status,
    run_directory,
    study_results,
    study_status,
)

__all__ = [
    "EXECUTORS",
    "RETRAINING_COLUMNS",
    "DamagedFileWarning",
    "JobOutcome",
    "STATES",
    "VIEWS",
    "RetrainJob",
    "RetrainSpec",
    "RunTask",
    "StudyPlan",
    "StudyProgress",
    "StudyReport",
    "StudySpec",
    "available_cores",
    "execute_run",
    "load_study_spec",
    "plan_workers",
    "retrain_directory",
    "retraining_results",
    "retraining_status",
    "run_directory",
    "run_study",
    "study_results",
    "study_status",
]
