"""``robustal study run|status|results``: grids of runs and retraining jobs, resumable, on
local processes or Ray."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from robustal.errors import ConfigError
from robustal.experiments import (
    VIEWS,
    DamagedFileWarning,
    JobOutcome,
    StudyPlan,
    StudyProgress,
    retraining_results,
    retraining_status,
    run_study,
    study_results,
    study_status,
)
from robustal.outputs import check_output_file

console = Console()
CONFIRM_ABOVE = 500  # runs and jobs to compute at once that need --yes: a grid this large is rarely meant
FORMATS = ("table", "csv", "parquet")
GROUP_COLUMNS = ["dataset", "model", "training", "acquisition"]
STATES = ["done", "partial", "failed", "pending"]
RETRAINING_SHOWN = ["training", "acquisition", "budget", "seed", "robust_after", "robust_gain"]  # even when constant

study_app = typer.Typer(
    help="Studies: grids of runs (datasets x models x acquisition functions x training x seeds).",
    no_args_is_help=True,
)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _describe(progress: StudyProgress) -> str:
    what = "runs+jobs" if progress.retraining_jobs else "runs"  # jobs: retraining jobs
    return (
        f"{what}: [green]{progress.done} done[/green], {progress.running} running, "
        f"[red]{progress.failed} failed[/red], {progress.pending} pending"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@contextmanager
def reporting_damage() -> Iterator[None]:
    """Print each `DamagedFileWarning` raised inside as one line on stderr (what is damaged and
    how to recover) instead of Python's warning with a source line; other warnings as usual."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedFileWarning)
        try:
            yield
        finally:  # also when the command fails: the damage may be why
            errors = Console(stderr=True)
            for warning in caught:
                if issubclass(warning.category, DamagedFileWarning):
                    errors.print(f"[yellow]warning[/yellow]: {warning.message}", highlight=False, soft_wrap=True)
                else:
                    warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def _describe_plan(plan: StudyPlan) -> str:
    jobs = f", {_plural(plan.retraining_jobs, 'retraining job')} ({plan.jobs_todo} to do)" if plan.retraining_jobs else ""
    counts = f"{_plural(plan.runs, 'run')} ({plan.runs_todo} to do){jobs}"
    if not plan.todo:
        return f"{counts}: nothing to compute"
    if plan.eta_seconds is None:
        estimate = "no time estimate until a run of this study has finished"
    else:
        estimate = (
            f"about {_duration(plan.eta_seconds)} at {plan.seconds_per_round:.3g}s per round (this study's finished "
            f"runs), {min(plan.parallel, plan.todo)} at once"
        )
    unit = "rounds+budgets" if plan.retraining_jobs else "rounds"
    return f"{counts}: {plan.rounds_todo} {unit} to compute; {estimate}"


def _check_plan(plan: StudyPlan, yes: bool) -> None:
    """Print what the study is about to compute; refuse more than `CONFIRM_ABOVE` runs and jobs without `yes`."""
    for message in plan.repaired.values():
        console.print(f"[yellow]repaired[/yellow] {message}", highlight=False, soft_wrap=True)
    console.print(_describe_plan(plan), highlight=False, soft_wrap=True)
    if plan.todo > CONFIRM_ABOVE and not yes:
        raise ConfigError(
            f"{plan.todo} runs and retraining jobs to compute (more than {CONFIRM_ABOVE}): "
            "add --yes to start them, or make the grid smaller"
        )


def _outcome_line(outcome: JobOutcome) -> str:
    """One line of a finished run or retraining job: id, function, seed, final metrics, time."""
    config, summary = outcome.job.config, outcome.summary
    options = ", ".join(f"{key}={value}" for key, value in sorted(config.acquisition_options.items()))
    what = f"{config.acquisition}{f' ({options})' if options else ''} seed {config.seed}"
    kind = "retraining " if outcome.job.kind == "retrain" else ""
    if outcome.state != "done":
        return f"{outcome.state} {kind}{outcome.key} {what}: {outcome.error}"
    if kind:
        gains = ", ".join(
            f"{100 * gain:+.2f}% at +{count}" for count, gain in zip(summary["budget_counts"], summary["robust_gain"])
        )
        metrics = f"robustness {gains} labels"
    else:
        metrics = f"accuracy {100 * summary['clean_accuracy']:.2f}%, robustness {100 * summary['robust_accuracy']:.2f}%"
    return f"done {kind}{outcome.key} {what}: {metrics}, {_duration(summary['seconds'])}"


@study_app.command("run")
def run_command(
    spec: Annotated[Path, typer.Argument(help="study spec (YAML), e.g. examples/quick.yaml")],
    out: Annotated[Path, typer.Option(help="study directory (runs/<run id>/ per run); run again to resume")],
    executor: Annotated[str, typer.Option(help="local (worker processes) or ray")] = "local",
    workers: Annotated[Optional[int], typer.Option(help="runs at once; default: one per CPU core")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch threads per run; default: cores / workers")] = None,
    ray_address: Annotated[
        Optional[str], typer.Option(help="Ray cluster address or 'auto'; none starts a local Ray instance")
    ] = None,
    gpus_per_run: Annotated[float, typer.Option(help="GPUs each Ray task requests (ray executor)")] = 0.0,
    extend: Annotated[
        bool, typer.Option("--extend", help="add the runs of SPEC to the study in OUT although its spec differs")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help=f"start more than {CONFIRM_ABOVE} runs and retraining jobs")
    ] = False,
) -> None:
    """Run every run and retraining job of SPEC that is not finished yet; failed ones are retried,
    damaged ones repaired.

    Retraining jobs (the spec's `retrain:` section) start once their source run is done. OUT
    holds one study: another spec is refused (--extend adds its runs), and one process at a
    time writes it. Where the output is no terminal, each run prints a line when it ends.
    """
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
        console=console,
    ) as bar:
        task = bar.add_task("starting", total=None, eta="?", unit="rounds")

        def on_progress(progress: StudyProgress) -> None:
            bar.update(
                task,
                description=_describe(progress),
                total=progress.rounds_total,
                completed=progress.rounds_done,
                eta=_duration(progress.eta_seconds),
                unit="rounds+budgets" if progress.retraining_jobs else "rounds",
            )

        def on_finish(outcome: JobOutcome) -> None:
            if not console.is_terminal:  # a log: the progress bar is only drawn at the end there
                console.print(_outcome_line(outcome), highlight=False, soft_wrap=True)

        try:
            report = run_study(
                spec, out, executor, workers, threads, ray_address, gpus_per_run, on_progress=on_progress,
                on_plan=lambda plan: _check_plan(plan, yes), on_finish=on_finish, extend=extend,
            )  # fmt: skip
        except KeyboardInterrupt:
            bar.stop()
            console.print(f"interrupted: run the same command again to resume (finished rounds are kept in {out})")
            raise typer.Exit(130) from None
    for noun, retraining in (("run", False), ("retraining job", True)):
        total = len(report.states) - len(report.retraining) if not retraining else len(report.retraining)
        if total or not retraining:
            done, skipped = report.count("done", retraining), report.count("skipped", retraining)
            failed = report.count("failed", retraining)
            console.print(f"{_plural(total, noun)}: {done} done, {skipped} skipped (finished before), {failed} failed")
    for key, error in report.errors.items():
        console.print(f"[red]failed[/red] {key}: {error}  (traceback: {report.directory(key) / 'error.json'})")
    console.print(f"results: robustal study results {out}" + (" [--retraining]" if report.retraining else ""))
    if report.count("failed"):
        raise typer.Exit(1)


@study_app.command("status")
def status_command(study_dir: Annotated[Path, typer.Argument(help="study directory (--out of study run)")]) -> None:
    """Runs and retraining jobs by state (done, partial = interrupted or running, failed,
    pending), per group."""
    status = study_status(study_dir)
    _print_states(status, "run", "rounds")
    for row in status[status["state"].isin(PROBLEMS)].itertuples():
        console.print(f"{PROBLEMS[row.state]} {row.run_id} ({row.acquisition}, {row.training}, seed {row.seed}): {row.error}")
    retraining = retraining_status(study_dir)
    if len(retraining):
        _print_states(retraining, "retraining job", "budgets", "training: the source run's; acquisition: the retraining's")
        for row in retraining[retraining["state"].isin(PROBLEMS)].itertuples():
            console.print(f"{PROBLEMS[row.state]} retraining {row.job_id} ({row.acquisition}, seed {row.seed}): {row.error}")


PROBLEMS = {"failed": "[red]failed[/red]", "damaged": "[yellow]damaged[/yellow]"}  # states listed one by one


def _print_states(status: pd.DataFrame, noun: str, unit: str, caption: str | None = None) -> None:
    """A line of counts by state, then a table of them per group with the `unit`s done of total."""
    counts = status["state"].value_counts()
    states = STATES + ["damaged"] * bool(counts.get("damaged"))  # a column only when some are
    console.print(f"{_plural(len(status), noun)}: " + ", ".join(f"{counts.get(state, 0)} {state}" for state in states))
    table = Table(*GROUP_COLUMNS, *states, unit, caption=caption)
    for key, group in status.groupby(GROUP_COLUMNS, dropna=False, sort=True):
        group_counts = group["state"].value_counts()
        steps = f"{group[f'{unit}_done'].sum()}/{group[f'{unit}_total'].sum()}"
        table.add_row(*map(str, key), *(str(group_counts.get(state, 0)) for state in states), steps)
    console.print(table)


@study_app.command("results")
def results_command(
    study_dir: Annotated[Path, typer.Argument(help="study directory (--out of study run)")],
    view: Annotated[
        Optional[str],
        typer.Option(help="summary (final results, mean and std over seeds; default), final (last round per run), rounds"),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="table, csv or parquet")] = "table",
    output: Annotated[Optional[Path], typer.Option(help="file for csv or parquet; csv default: stdout")] = None,
    selections: Annotated[bool, typer.Option("--selections", help="keep the indices selected each round")] = False,
    retraining: Annotated[
        bool,
        typer.Option(
            "--retraining",
            help="the retraining jobs' results instead: one row per source run, function, budget and seed",
        ),
    ] = False,
) -> None:
    """The study's results, read from every run's (or retraining job's) Parquet file with DuckDB."""
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    if view is not None and view not in VIEWS:
        raise ConfigError(f"unknown view {view!r}; valid views: {', '.join(VIEWS)}")
    if retraining and (view is not None or selections):
        raise ConfigError("--view and --selections choose among the runs' results; leave them out with --retraining")
    if format == "parquet" and output is None:
        raise ConfigError("--format parquet writes a file: add --output FILE.parquet")
    if format == "table" and output is not None:
        raise ConfigError("--output is for --format csv or parquet; a table is printed")
    if output is not None:
        check_output_file(output)
    view = view or "summary"
    what = "retraining" if retraining else view
    with reporting_damage():
        frame = retraining_results(study_dir) if retraining else study_results(study_dir, view, selections)
    if format == "csv":
        frame.to_csv(output or sys.stdout, index=False)
    elif format == "parquet":
        frame.to_parquet(output, index=False)
    elif frame.empty:
        console.print(f"no {what} results in {study_dir} yet (see robustal study status {study_dir})")
    else:
        title = f"retraining results of {study_dir}" if retraining else f"{view} of {study_dir}"
        console.print(_results_table(frame, title, always=RETRAINING_SHOWN if retraining else None))
    if output is not None:
        typer.echo(f"{len(frame)} rows -> {output}", err=True)


def _results_table(frame: pd.DataFrame, title: str, always: list[str] | None = None) -> Table:
    """`frame` as a rich table: the `always` columns (default: the run's identity), metrics and
    the settings that vary; the settings that are the same in every row go to the caption."""
    always = always or [*GROUP_COLUMNS, "seed", "round", "labeled"]
    constant = [
        c for c in frame.columns if c not in always and "accuracy" not in c and frame[c].map(repr).nunique() == 1
    ]
    caption = ", ".join(f"{c}={_cell(frame[c].iloc[0])}" for c in constant)
    shown = [c for c in frame.columns if c not in constant]
    table = Table(*shown, title=title, caption=f"same in every row: {caption}" if caption else None)
    for row in frame[shown].itertuples(index=False):
        table.add_row(*map(_cell, row))
    return table


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
