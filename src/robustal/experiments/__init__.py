"""Studies: grids of runs with stable ids, a resumable runner on local processes or Ray, and
the results store (one directory per run, Parquet files queried with DuckDB).

>>> from robustal.experiments import load_study_spec, run_study, study_results
>>> report = run_study(load_study_spec("examples/quick.yaml"), "studies/quick")  # doctest: +SKIP
>>> study_results("studies/quick", view="summary")  # doctest: +SKIP
"""

from robustal.experiments.executors import EXECUTORS, RunTask, available_cores, execute_run, plan_workers
from robustal.experiments.runner import StudyProgress, StudyReport, run_study
from robustal.experiments.spec import StudySpec, load_study_spec
from robustal.experiments.store import STATES, VIEWS, run_directory, study_results, study_status

__all__ = [
    "EXECUTORS",
    "STATES",
    "VIEWS",
    "RunTask",
    "StudyProgress",
    "StudyReport",
    "StudySpec",
    "available_cores",
    "execute_run",
    "load_study_spec",
    "plan_workers",
    "run_directory",
    "run_study",
    "study_results",
    "study_status",
]
