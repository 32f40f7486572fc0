"""Run a study: every run of a spec that is not done yet, on an executor, with progress.

Running a study again is how it resumes: finished runs are skipped, interrupted runs
continue from their last finished round, failed runs are tried again.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from robustal.config import RunConfig
from robustal.experiments.executors import Executor, RunTask, check_executor, make_executor
from robustal.experiments.spec import StudySpec, load_study_spec
from robustal.experiments.store import (
    ERROR_FILE,
    mark_failed,
    read_json,
    rounds_completed,
    run_directory,
    run_state,
    write_study,
)


@dataclass(frozen=True)
class StudyProgress:
    """Where a running study stands: runs by state, rounds finished (or no longer expected,
    from failed runs) of all rounds, and the estimated time left."""

    runs: int
    done: int
    failed: int
    running: int
    rounds_done: int
    rounds_total: int
    elapsed_seconds: float
    eta_seconds: float | None  # None until a round finished in this session

    @property
    def pending(self) -> int:
        """Runs not started yet."""
        return self.runs - self.done - self.failed - self.running


@dataclass
class StudyReport:
    """The outcome of `run_study`: each run's state (``done``, ``failed``; ``skipped`` when it
    had finished before) and the one-line error of each failed run."""

    study_dir: Path
    states: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def count(self, state: str) -> int:
        """How many runs ended in `state`."""
        return sum(1 for value in self.states.values() if value == state)


class _RoundCounter:
    """Rounds finished per run, polled from the run directories, for progress and ETA."""

    def __init__(self, study_dir: Path, configs: list[RunConfig]) -> None:
        self.study_dir = study_dir
        self.totals = {c.run_id(): c.rounds + 1 for c in configs}
        self.done = {run_id: self._read(run_id) for run_id in self.totals}
        self.at_start = sum(self.done.values())
        self.ended: set[str] = set()
        self.start = time.perf_counter()

    def _read(self, run_id: str) -> int:
        return rounds_completed(run_directory(self.study_dir, run_id))

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
) -> StudyReport:
    """Run every run of `spec` (a `StudySpec` or a YAML path) into the study directory `out`.

    `executor`: ``local`` (worker processes on this machine) or ``ray`` (one Ray task per
    run; `ray_address` ``auto`` or a cluster address, none starts a local Ray instance).
    `workers` runs go at once with `threads` torch threads each (default: one single-threaded
    run per CPU core). A run that fails records its error and the others go on.
    `on_progress` is called every `poll_seconds` while runs are going.
    """
    check_executor(executor, ray_address, gpus_per_run)
    if not isinstance(spec, StudySpec):
        spec = load_study_spec(spec)
    configs = spec.expand()
    study_dir = Path(out).absolute()  # workers (Ray's too) may run in another working directory
    write_study(study_dir, spec.to_dict(), configs)
    report = StudyReport(study_dir)
    todo: deque[RunConfig] = deque()
    for config in configs:
        if run_state(run_directory(study_dir, config.run_id())) == "done":
            report.states[config.run_id()] = "skipped"
        else:
            todo.append(config)
    counter = _RoundCounter(study_dir, configs)

    def report_progress(running: list[str]) -> None:
        if on_progress is not None:
            on_progress(counter.progress(report.states, running))

    if todo:
        pool = make_executor(executor, workers, threads, ray_address, gpus_per_run)
        try:
            _run_all(pool, todo, study_dir, report, report_progress, poll_seconds)
        finally:
            pool.close()
    report_progress([])
    return report


def _run_all(
    pool: Executor,
    todo: deque[RunConfig],
    study_dir: Path,
    report: StudyReport,
    report_progress: Callable[[list[str]], None],
    poll_seconds: float,
) -> None:
    """Keep `pool.workers` runs going until `todo` is empty; record how each run ended."""
    running: dict[str, str] = {}  # run directory -> run id
    while todo or running:
        while todo and len(running) < pool.workers:
            config = todo.popleft()
            run_dir = str(run_directory(study_dir, config.run_id()))
            pool.start(RunTask(config, run_dir, pool.threads))
            running[run_dir] = config.run_id()
        for run_dir, crash in pool.wait(poll_seconds):
            run_id = running.pop(run_dir)
            if crash is not None:
                mark_failed(Path(run_dir), crash)
            report.states[run_id] = run_state(Path(run_dir))
            if report.states[run_id] == "failed":
                report.errors[run_id] = read_json(Path(run_dir) / ERROR_FILE)["error"]
        report_progress(list(running.values()))
