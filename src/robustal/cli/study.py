"""``robustal study run|status|results``: grids of runs and retraining jobs, resumable, on
local processes or Ray."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from robustal.errors import ConfigError
from robustal.experiments import (
    StudyProgress,
    VIEWS,
    retraining_results,
    retraining_status,
    run_study,
    study_results,
    study_status,
)

console = Console()
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
) -> None:
    """Run every run and retraining job of SPEC that is not finished yet; failed ones are retried.

    Retraining jobs (the spec's `retrain:` section) start once their source run is done.
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

        try:
            report = run_study(spec, out, executor, workers, threads, ray_address, gpus_per_run, on_progress=on_progress)
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
    for row in status[status["state"] == "failed"].itertuples():
        console.print(f"[red]failed[/red] {row.run_id} ({row.acquisition}, {row.training}, seed {row.seed}): {row.error}")
    retraining = retraining_status(study_dir)
    if len(retraining):
        _print_states(retraining, "retraining job", "budgets", "training: the source run's; acquisition: the retraining's")
        for row in retraining[retraining["state"] == "failed"].itertuples():
            console.print(f"[red]failed[/red] retraining {row.job_id} ({row.acquisition}, seed {row.seed}): {row.error}")


def _print_states(status: pd.DataFrame, noun: str, unit: str, caption: str | None = None) -> None:
    """A line of counts by state, then a table of them per group with the `unit`s done of total."""
    counts = status["state"].value_counts()
    console.print(f"{_plural(len(status), noun)}: " + ", ".join(f"{counts.get(state, 0)} {state}" for state in STATES))
    table = Table(*GROUP_COLUMNS, *STATES, unit, caption=caption)
    for key, group in status.groupby(GROUP_COLUMNS, dropna=False, sort=True):
        group_counts = group["state"].value_counts()
        steps = f"{group[f'{unit}_done'].sum()}/{group[f'{unit}_total'].sum()}"
        table.add_row(*map(str, key), *(str(group_counts.get(state, 0)) for state in STATES), steps)
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
    view = view or "summary"
    what = "retraining" if retraining else view
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
