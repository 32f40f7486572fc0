"""Where a study's runs execute: local worker processes or Ray tasks, through one function.

`execute_run` runs one run (or one retraining job) to completion in the current process and
records the outcome in its directory (``done.json`` or ``error.json``); both executors only
decide where it is called. An executor starts runs (`start`) and reports the ones that ended (`wait`), each with
a crash message when its process died without recording an outcome (killed, out of memory).
A crashed run is retried (it resumes from its checkpoint) up to `MAX_RETRIES` times.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from robustal.errors import ConfigError, unknown_name_error
from robustal.experiments.evaluate import evaluate_run, needs_evaluation
from robustal.rundir import Job, clear_outcome, job_state, mark_done, mark_failed

EXECUTORS = ("local", "ray")
MAX_RETRIES = 2
FORKSERVER_PRELOAD = (__name__, "torch._dynamo", "sklearn.datasets", "sklearn.model_selection")  # a missing module is skipped


@dataclass(frozen=True)
class RunTask:
    """One job to execute (`robustal.rundir.Job`: a run or a retraining job), its directory, the
    torch threads it may use, and the study directory that a retraining job's relative
    checkpoint path (``runs/<run id>``) is read from."""

    job: Job
    run_dir: str
    threads: int = 1
    study_dir: str | None = None
    evaluate: dict | None = None  # a study's `evaluate` section: AutoAttack on the final model


def execute_run(task: RunTask) -> str:
    """Run `task` to completion here, resuming from its checkpoint or finished budgets; returns
    ``done``, ``failed`` (the error is in ``error.json``) or ``skipped`` (it had finished before)."""
    torch.set_num_threads(task.threads)
    run_dir = Path(task.run_dir)
    if job_state(run_dir, task.job) == "done" and not needs_evaluation(run_dir, task.evaluate):
        return "skipped"
    clear_outcome(run_dir)
    try:
        summary = task.job.run(run_dir, Path(task.study_dir) if task.study_dir else None)
        if task.evaluate is not None:  # the runner gives a study's `evaluate` section to runs only
            evaluation, _ = evaluate_run(run_dir, task.evaluate.get("attacks"), task.evaluate.get("n"))
            summary["autoattack_robust_accuracy"] = evaluation["robust_accuracy"]
    except Exception as error:  # recorded, so that one failed run does not stop the study
        mark_failed(run_dir, f"{type(error).__name__}: {error}", traceback.format_exc())
        return "failed"
    mark_done(run_dir, summary)
    return "done"


class Executor(Protocol):
    """Runs tasks somewhere: at most `workers` at once, each with `threads` torch threads."""

    workers: int
    threads: int

    def start(self, task: RunTask) -> None:
        """Start `task` (the caller keeps at most `workers` running)."""

    def wait(self, timeout: float) -> list[tuple[str, str | None]]:
        """Wait up to `timeout` seconds; (run_dir, crash message or None) of each run that ended."""

    def close(self) -> None:
        """Stop what still runs and release the workers."""


def available_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan_workers(cpus: int, workers: int | None, threads: int | None) -> tuple[int, int]:
    """(runs at once, torch threads per run) for `cpus` cores: by default one single-threaded
    run per core; given `workers`, the cores are split among them."""
    for name, value in (("workers", workers), ("threads", threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if workers is None:
        threads = threads or 1
        return max(1, cpus // threads), threads
    return workers, threads or max(1, cpus // workers)


def _crash_message(exit_code: int, attempts: int) -> str:
    how = f"was killed by {signal.Signals(-exit_code).name}" if exit_code < 0 else f"exited with code {exit_code}"
    return f"the worker process {how} before the run recorded an outcome (tried {attempts}x; out of memory?)"


def _worker_main(task: RunTask) -> None:
    # Ctrl-C reaches the whole process group: the study process alone handles it (it stops the
    # workers), so that a worker does not also print a traceback; the run resumes next time
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    execute_run(task)


class LocalExecutor:
    """Runs each task in its own worker process on this machine (forkserver, else spawn:
    never a plain fork of a process that already runs torch)."""

    def __init__(self, workers: int | None = None, threads: int | None = None, retries: int = MAX_RETRIES) -> None:
        self.workers, self.threads = plan_workers(available_cores(), workers, threads)
        self.retries = retries
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if "forkserver" in methods:
            # import once, in the fork server, what every run imports (seconds each): torch and
            # robustal, torch's compiler (imported by the first optimizer), scikit-learn (digits)
            self._context.set_forkserver_preload(list(FORKSERVER_PRELOAD))
        self._processes: dict[str, multiprocessing.process.BaseProcess] = {}
        self._tasks: dict[str, RunTask] = {}
        self._attempts: dict[str, int] = {}

    def start(self, task: RunTask) -> None:
        process = self._context.Process(target=_worker_main, args=(task,), name=f"robustal-{Path(task.run_dir).name}")
        process.start()
        self._processes[task.run_dir] = process
        self._tasks[task.run_dir] = task
        self._attempts[task.run_dir] = self._attempts.get(task.run_dir, 0) + 1

    def wait(self, timeout: float) -> list[tuple[str, str | None]]:
        ready = set(multiprocessing.connection.wait([p.sentinel for p in self._processes.values()], timeout))
        ended = []
        for run_dir, process in list(self._processes.items()):
            if process.sentinel not in ready:
                continue
            process.join()
            del self._processes[run_dir]
            if process.exitcode == 0:
                ended.append((run_dir, None))
            elif self._attempts[run_dir] <= self.retries:
                self.start(self._tasks[run_dir])  # resumes from the last checkpoint
            else:
                ended.append((run_dir, _crash_message(process.exitcode, self._attempts[run_dir])))
        return ended

    def close(self) -> None:
        for process in self._processes.values():
            process.terminate()
        for process in self._processes.values():
            process.join()
        self._processes.clear()


class RayExecutor:
    """Runs each task as one Ray task (retried by Ray when its worker dies).

    `address` is a cluster address or ``auto``; without one, a local Ray instance is started
    on this machine's cores and shut down by `close`. On a cluster, the study directory and
    the data root must be on storage that every node can reach.
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        threads: int | None = None,
        gpus_per_run: float = 0,
        retries: int = MAX_RETRIES,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray executor needs Ray: pip install 'robustal[ray]'") from None
        self._ray = ray
        self._owns_instance = not ray.is_initialized()
        if self._owns_instance:
            local = address is None and not os.environ.get("RAY_ADDRESS")
            ray.init(
                address=address,
                num_cpus=available_cores() if local else None,
                include_dashboard=False,
                log_to_driver=False,
            )
        self.retries = retries
        self.workers, self.threads = plan_workers(int(ray.cluster_resources().get("CPU", 1)), workers, threads)
        self._remote = ray.remote(num_cpus=self.threads, num_gpus=gpus_per_run, max_retries=retries)(execute_run)
        self._pending: dict = {}  # ObjectRef -> run_dir

    def start(self, task: RunTask) -> None:
        self._pending[self._remote.remote(task)] = task.run_dir

    def wait(self, timeout: float) -> list[tuple[str, str | None]]:
        ready, _ = self._ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        ended = []
        for ref in ready:
            run_dir = self._pending.pop(ref)
            try:
                self._ray.get(ref)
                ended.append((run_dir, None))
            except self._ray.exceptions.RayError as error:
                ended.append((run_dir, f"the Ray task failed ({self.retries} retries): {error}"))
        return ended

    def close(self) -> None:
        for ref in self._pending:
            self._ray.cancel(ref, force=True)
        self._pending.clear()
        if self._owns_instance:
            self._ray.shutdown()


def check_executor(name: str, ray_address: str | None = None, gpus_per_run: float = 0) -> None:
    """Raise `ConfigError` when `name` is no executor or is given another executor's settings."""
    if name not in EXECUTORS:
        raise unknown_name_error("executor", name, EXECUTORS)
    if name == "local" and (ray_address is not None or gpus_per_run):
        raise ConfigError("a Ray address and GPUs per run are settings of the ray executor: add --executor ray")


def make_executor(
    name: str,
    workers: int | None = None,
    threads: int | None = None,
    ray_address: str | None = None,
    gpus_per_run: float = 0,
) -> Executor:
    """The executor `name` (``local`` or ``ray``) with its settings checked."""
    check_executor(name, ray_address, gpus_per_run)
    if name == "local":
        return LocalExecutor(workers, threads)
    return RayExecutor(ray_address, workers, threads, gpus_per_run)
