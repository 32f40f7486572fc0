"""Run a study: every run and retraining job of a spec that is not done yet, on an executor,
with progress.

Runs and retraining jobs go through the same executor and the same scheduling loop; a
retraining job starts once its source run is done (and fails, saying why, when the source
run failed). Running a study again is how it resumes: finished runs and jobs are skipped,
interrupted runs continue from their last finished round (jobs from their last finished
budget), failed ones are tried again, damaged ones are repaired. A study directory holds one
study (another spec is refused unless it extends the study) written by one process at a time
(a lock).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from robustal.errors import RobustALError
from robustal.experiments.evaluate import needs_evaluation
from robustal.experiments.executors import (
    Executor,
    RunTask,
    available_cores,
    check_executor,
    make_executor,
    plan_workers,
)
from robustal.experiments.spec import StudySpec, load_study_spec
from robustal.experiments.store import (
    adopt_earlier_ids,
    check_same_study,
    retrain_directory,
    retraining_entry,
    run_directory,
    study_lock,
    write_study,
)
from robustal.loop import ActiveLearningJob
from robustal.outputs import prepare_output_dir
from robustal.retraining import RetrainingJob
from robustal.rundir import DONE_FILE, ERROR_FILE, Job, job_state, mark_failed, read_json, repair_damaged


@dataclass(frozen=True)
class StudyProgress:
    """Where a running study stands: runs (and retraining jobs, counted with them) by state,
    rounds finished (or no longer expected, from failed runs) of all rounds, a retraining
    job's budgets counted as rounds, and the estimated time left."""

    runs: int
    done: int
    failed: int
    running: int
    rounds_done: int
    rounds_total: int
    elapsed_seconds: float
    eta_seconds: float | None  # None until a round finished in this session
    retraining_jobs: int = 0  # how many of `runs` are retraining jobs

    @property
    def pending(self) -> int:
        """Runs not started yet."""
        return self.runs - self.done - self.failed - self.running


@dataclass(frozen=True)
class StudyPlan:
    """What `run_study` is about to compute, told before it starts: the spec's runs and
    retraining jobs, how many of them are not done yet, their rounds (a job's budgets counted as
    rounds), and the seconds per round that the study's finished runs took (None before any
    finished; then `eta_seconds` is None too), and the damaged runs and jobs just repaired."""

    runs: int
    retraining_jobs: int
    runs_todo: int
    jobs_todo: int
    rounds_todo: int
    seconds_per_round: float | None
    parallel: int  # runs at once (local executor; a guess for Ray)
    repaired: dict[str, str] = field(default_factory=dict)  # see `StudyReport.repaired`

    @property
    def todo(self) -> int:
        """Runs and retraining jobs to compute."""
        return self.runs_todo + self.jobs_todo

    @property
    def eta_seconds(self) -> float | None:
        """The time the rounds to do take at the measured speed, `parallel` runs at once."""
        if self.seconds_per_round is None:
            return None
        return self.seconds_per_round * self.rounds_todo / max(1, min(self.parallel, self.todo))


@dataclass(frozen=True)
class JobOutcome:
    """How one run or retraining job of a study ended (``done`` or ``failed``): its id and
    settings, what its ``done.json`` says (final metrics, seconds; empty when it failed) and
    the one-line error of a failed one."""

    key: str
    job: Job
    state: str
    summary: dict
    error: str | None = None


@dataclass
class StudyReport:
    """The outcome of `run_study`: the state of each run and retraining job by id (``done``,
    ``failed``; ``skipped`` when it had finished before), the one-line error of each failed
    one, which ids are retraining jobs, and what was repaired (id -> what was damaged, what
    was done)."""

    study_dir: Path
    states: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    retraining: set[str] = field(default_factory=set)
    repaired: dict[str, str] = field(default_factory=dict)

    def count(self, state: str, retraining: bool | None = None) -> int:
        """How many runs and jobs ended in `state` (only retraining jobs with `retraining`
        True, only runs with False)."""
        return sum(
            1
            for key, value in self.states.items()
            if value == state and (retraining is None or (key in self.retraining) == retraining)
        )

    def directory(self, key: str) -> Path:
        """The directory of run or retraining job `key`."""
        return (retrain_directory if key in self.retraining else run_directory)(self.study_dir, key)


@dataclass(frozen=True)
class _Job:
    """A run or retraining job to execute; `after` is the run that must be done first."""

    key: str
    job: Job
    directory: Path
    after: str | None = None

    @property
    def steps(self) -> int:
        """Rounds of a run, budgets of a retraining job."""
        return self.job.steps

    def steps_done(self) -> int:
        """Rounds or budgets on disk (a retraining job's earlier specs may have had more budgets)."""
        return min(self.job.records.count(self.directory), self.steps)


class _RoundCounter:
    """Rounds (budgets of retraining jobs) finished per job, polled from their directories,
    for progress and ETA."""

    def __init__(self, jobs: list[_Job]) -> None:
        self.jobs = {job.key: job for job in jobs}
        self.totals = {job.key: job.steps for job in jobs}
        self.retraining = sum(1 for job in jobs if job.after is not None)
        self.done = {key: self._read(key) for key in self.totals}
        self.at_start = sum(self.done.values())
        self.ended: set[str] = set()
        self.start = time.perf_counter()

    def _read(self, key: str) -> int:
        return self.jobs[key].steps_done()

    def progress(self, states: dict[str, str], running: list[str]) -> StudyProgress:
        for run_id in [*running, *(set(states) - self.ended)]:
            self.done[run_id] = self._read(run_id)
        self.ended.update(states)
        # the rounds a failed run did not finish are no longer expected
        remaining = sum(total - self.done[run_id] for run_id, total in self.totals.items() if run_id not in states)
        rounds_total = sum(self.totals.values())
        elapsed = time.perf_counter() - self.start
        computed = sum(self.done.values()) - self.at_start
        return StudyProgress(
            runs=len(self.totals),
            done=sum(1 for state in states.values() if state in ("done", "skipped")),
            failed=sum(1 for state in states.values() if state == "failed"),
            running=len(running),
            rounds_done=rounds_total - remaining,
            rounds_total=rounds_total,
            elapsed_seconds=elapsed,
            eta_seconds=elapsed * remaining / computed if computed > 0 else None,
            retraining_jobs=self.retraining,
        )


def run_study(
    spec: StudySpec | str | os.PathLike,
    out: str | os.PathLike,
    executor: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    ray_address: str | None = None,
    gpus_per_run: float = 0,
    on_progress: Callable[[StudyProgress], None] | None = None,
    poll_seconds: float = 1.0,
    on_plan: Callable[[StudyPlan], None] | None = None,
    on_finish: Callable[[JobOutcome], None] | None = None,
    extend: bool = False,
) -> StudyReport:
    """Run every run and retraining job of `spec` (a `StudySpec` or a YAML path) into the
    study directory `out`.

    `executor`: ``local`` (worker processes on this machine) or ``ray`` (one Ray task per
    run or job; `ray_address` ``auto`` or a cluster address, none starts a local Ray instance).
    `workers` runs go at once with `threads` torch threads each (default: one single-threaded
    run per CPU core). A run that fails records its error and the others go on; the retraining
    jobs of a failed run fail too. `on_progress` is called every `poll_seconds` while runs are
    going, `on_finish` when a run or job ends, `on_plan` once before anything is computed or the
    study is written (it may raise to stop). Runs whose Parquet file is damaged are repaired
    (see `repair_damaged`; `StudyReport.repaired`).

    `out` holds one study: a spec other than the one stored there is a `ConfigError` unless
    `extend` (its runs are added to the study); another process running a study into `out` is
    a `RobustALError` naming it (see `study_lock`).
    """
    check_executor(executor, ray_address, gpus_per_run)
    if not isinstance(spec, StudySpec):
        spec = load_study_spec(spec)
    configs = spec.expand()
    retraining = spec.expand_retraining(configs)
    # absolute: workers (Ray's too) may run in another working directory
    study_dir = prepare_output_dir(out).absolute()
    with study_lock(study_dir):
        check_same_study(study_dir, spec.to_dict(), extend)
        entries = {job.job_id: retraining_entry(job.source_run_id, job.config) for job in retraining}
        # each run followed by the retraining jobs that start from it: with few workers, a dataset's
        # retraining is done when its runs are, not after every run of the study
        jobs = []
        for config in configs:
            jobs.append(_Job(config.run_id(), ActiveLearningJob(config), run_directory(study_dir, config.run_id())))
            jobs += [
                _Job(
                    job.job_id, RetrainingJob(job.config), retrain_directory(study_dir, job.job_id), after=job.source_run_id
                )
                for job in retraining
                if job.source_run_id == config.run_id()
            ]
        report = StudyReport(study_dir, retraining=set(entries))
        report.repaired = adopt_earlier_ids(
            study_dir, {config.run_id(): config for config in configs}, {job.job_id: job.config for job in retraining}
        )
        report.repaired.update({job.key: found for job in jobs if (found := repair_damaged(job.directory, job.job))})
        todo = [job for job in jobs if job_state(job.directory, job.job) != "done" or _unevaluated(job, spec)]
        if on_plan is not None:
            on_plan(_plan(jobs, todo, workers, threads, report.repaired))
        write_study(study_dir, spec.to_dict(), configs, entries)
        keys = {job.key for job in todo}
        report.states.update({job.key: "skipped" for job in jobs if job.key not in keys})
        counter = _RoundCounter(jobs)

        def report_progress(running: list[str]) -> None:
            if on_progress is not None:
                on_progress(counter.progress(report.states, running))

        if todo:
            pool = make_executor(executor, workers, threads, ray_address, gpus_per_run)
            try:
                _run_all(pool, todo, study_dir, report, report_progress, poll_seconds, on_finish, spec.evaluate)
            finally:
                pool.close()
        report_progress([])
    return report


def _plan(
    jobs: list[_Job], todo: list[_Job], workers: int | None, threads: int | None, repaired: dict[str, str]
) -> StudyPlan:
    runs_todo = sum(1 for job in todo if job.after is None)
    keys = {job.key for job in todo}
    finished = [job.directory for job in jobs if job.after is None and job.key not in keys]
    return StudyPlan(
        runs=sum(1 for job in jobs if job.after is None),
        retraining_jobs=sum(1 for job in jobs if job.after is not None),
        runs_todo=runs_todo,
        jobs_todo=len(todo) - runs_todo,
        rounds_todo=sum(max(0, job.steps - job.steps_done()) for job in todo),
        seconds_per_round=_seconds_per_round(finished),
        parallel=plan_workers(available_cores(), workers, threads)[0],  # for Ray: as if on this machine
        repaired=repaired,
    )


def _seconds_per_round(run_dirs: list[Path]) -> float | None:
    """The mean seconds per round of the finished runs in `run_dirs` (their ``done.json``)."""
    summaries = [read_json(run_dir / DONE_FILE) for run_dir in run_dirs]
    rounds = sum(summary.get("rounds", 0) for summary in summaries)
    return sum(summary.get("seconds", 0.0) for summary in summaries) / rounds if rounds else None


def _unevaluated(job: _Job, spec: StudySpec) -> bool:
    """Whether `job` is a run whose final model the study's `evaluate` section still has to attack."""
    return job.after is None and needs_evaluation(job.directory, spec.evaluate)


def _run_all(
    pool: Executor,
    todo: list[_Job],
    study_dir: Path,
    report: StudyReport,
    report_progress: Callable[[list[str]], None],
    poll_seconds: float,
    on_finish: Callable[[JobOutcome], None] | None = None,
    evaluate: dict | None = None,
) -> None:
    """Keep `pool.workers` jobs going until `todo` is empty, each started (in order) once the
    run it comes after is done; record how each job ended. Runs (not retraining jobs) get the
    study's `evaluate` section."""
    running: dict[str, _Job] = {}  # job directory -> job
    while todo or running:
        for job in list(todo):
            if len(running) >= pool.workers:
                break
            source = "done" if job.after is None else report.states.get(job.after)
            if source in ("done", "skipped"):
                todo.remove(job)
                task_evaluate = evaluate if job.after is None else None  # AutoAttack on runs, not on retraining jobs
                pool.start(RunTask(job.job, str(job.directory), pool.threads, str(study_dir), task_evaluate))
                running[str(job.directory)] = job
            elif source == "failed":
                todo.remove(job)
                mark_failed(job.directory, f"its source run {job.after} failed: {report.errors[job.after]}")
                _record(report, job, on_finish)
        if todo and not running:  # cannot happen: a job's source run is started before the job
            raise RobustALError(f"{len(todo)} retraining jobs wait for source runs that neither finished nor failed")
        for job_dir, crash in pool.wait(poll_seconds) if running else []:
            job = running.pop(job_dir)
            if crash is not None:
                mark_failed(Path(job_dir), crash)
            _record(report, job, on_finish)
        report_progress([job.key for job in running.values()])


def _record(report: StudyReport, job: _Job, on_finish: Callable[[JobOutcome], None] | None) -> None:
    state = report.states[job.key] = job_state(job.directory, job.job)
    if state == "failed":
        report.errors[job.key] = read_json(job.directory / ERROR_FILE)["error"]
    if on_finish is not None:
        summary = read_json(job.directory / DONE_FILE) if state == "done" else {}
        on_finish(JobOutcome(job.key, job.job, state, summary, report.errors.get(job.key)))
