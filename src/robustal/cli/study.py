"""``robustal study run|status|results``: grids of runs, resumable, on local processes or Ray."""

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
from robustal.experiments import StudyProgress, VIEWS, run_study, study_results, study_status

console = Console()
FORMATS = ("table", "csv", "parquet")
GROUP_COLUMNS = ["dataset", "model", "training", "acquisition"]

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
    return (
        f"runs: [green]{progress.done} done[/green], {progress.running} running, "
        f"[red]{progress.failed} failed[/red], {progress.pending} pending"
    )


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
    """Run every run of SPEC that is not finished yet; failed runs are retried."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rounds"),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
        console=console,
    ) as bar:
        task = bar.add_task("starting", total=None, eta="?")

        def on_progress(progress: StudyProgress) -> None:
            bar.update(
                task,
                description=_describe(progress),
                total=progress.rounds_total,
                completed=progress.rounds_done,
                eta=_duration(progress.eta_seconds),
            )

        try:
            report = run_study(spec, out, executor, workers, threads, ray_address, gpus_per_run, on_progress=on_progress)
        except KeyboardInterrupt:
            bar.stop()
            console.print(f"interrupted: run the same command again to resume (finished rounds are kept in {out})")
            raise typer.Exit(130) from None
    done, skipped, failed = report.count("done"), report.count("skipped"), report.count("failed")
    runs = f"{len(report.states)} run{'' if len(report.states) == 1 else 's'}"
    console.print(f"{runs}: {done} done, {skipped} skipped (finished before), {failed} failed")
    for run_id, error in report.errors.items():
        console.print(f"[red]failed[/red] {run_id}: {error}  (traceback: {out}/runs/{run_id}/error.json)")
    console.print(f"results: robustal study results {out}")
    if failed:
        raise typer.Exit(1)


@study_app.command("status")
def status_command(study_dir: Annotated[Path, typer.Argument(help="study directory (--out of study run)")]) -> None:
    """Runs by state (done, partial = interrupted or running, failed, pending), per group."""
    status = study_status(study_dir)
    counts = status["state"].value_counts()
    states = ["done", "partial", "failed", "pending"]
    console.print(f"{len(status)} runs: " + ", ".join(f"{counts.get(state, 0)} {state}" for state in states))
    table = Table(*GROUP_COLUMNS, *states, "rounds")
    for key, group in status.groupby(GROUP_COLUMNS, dropna=False, sort=True):
        group_counts = group["state"].value_counts()
        rounds = f"{group['rounds_done'].sum()}/{group['rounds_total'].sum()}"
        table.add_row(*map(str, key), *(str(group_counts.get(state, 0)) for state in states), rounds)
    console.print(table)
    for row in status[status["state"] == "failed"].itertuples():
        console.print(f"[red]failed[/red] {row.run_id} ({row.acquisition}, {row.training}, seed {row.seed}): {row.error}")


@study_app.command("results")
def results_command(
    study_dir: Annotated[Path, typer.Argument(help="study directory (--out of study run)")],
    view: Annotated[
        str, typer.Option(help="summary (final results, mean and std over seeds), final (last round per run), rounds")
    ] = "summary",
    format: Annotated[str, typer.Option("--format", help="table, csv or parquet")] = "table",
    output: Annotated[Optional[Path], typer.Option(help="file for csv or parquet; csv default: stdout")] = None,
    selections: Annotated[bool, typer.Option("--selections", help="keep the indices selected each round")] = False,
) -> None:
    """The study's results, read from every run's Parquet file with DuckDB."""
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    if view not in VIEWS:
        raise ConfigError(f"unknown view {view!r}; valid views: {', '.join(VIEWS)}")
    if format == "parquet" and output is None:
        raise ConfigError("--format parquet writes a file: add --output FILE.parquet")
    if format == "table" and output is not None:
        raise ConfigError("--output is for --format csv or parquet; a table is printed")
    frame = study_results(study_dir, view, selections)
    if format == "csv":
        frame.to_csv(output or sys.stdout, index=False)
    elif format == "parquet":
        frame.to_parquet(output, index=False)
    elif frame.empty:
        console.print(f"no {view} results in {study_dir} yet (see robustal study status {study_dir})")
    else:
        console.print(_results_table(frame, title=f"{view} of {study_dir}"))
    if output is not None:
        typer.echo(f"{len(frame)} rows -> {output}", err=True)


def _results_table(frame: pd.DataFrame, title: str) -> Table:
    """`frame` as a rich table: the run's identity, metrics and the settings that vary; the
    settings that are the same in every row go to the caption."""
    always = [*GROUP_COLUMNS, "seed", "round", "labeled"]
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
