"""``robustal run`` (one active-learning run) and ``robustal demo`` (all functions on digits)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from robustal.acquisition import available_acquisitions
from robustal.cli.settings import given_settings, run_setting_parameters, with_setting_options
from robustal.config import RunConfig, make_config
from robustal.loop import RoundRecord, run_active_learning
from robustal.outputs import prepare_output_dir
from robustal.presets import apply_preset
from robustal.report import plot_learning_curves

console = Console()

def _resume_line(config: RunConfig, out: Path, records: list[RoundRecord]) -> str:
    last = records[-1]
    done = f"{last.round + 1} round{'s' if last.round else ''} done, {last.labeled} labels"
    if last.labeled >= config.budget:
        return f"{out} holds this run, already finished ({done})"
    return f"resuming from round {last.round + 1} in {out} ({done})"


def _interrupted(out: Path) -> typer.Exit:
    """The exit of a run stopped with Ctrl-C, after saying how to resume it."""
    console.print(
        f"interrupted: run the same command again to resume; it continues after the last finished round (kept in {out})"
    )
    return typer.Exit(130)


def _round_line(record: RoundRecord) -> str:
    return (
        f"round {record.round:>2}  labeled {record.labeled:>5}  accuracy {100 * record.clean_accuracy:6.2f}%  "
        f"robustness {100 * record.robust_accuracy:6.2f}%  train {record.train_seconds:6.1f}s  "
        f"select {record.select_seconds:5.1f}s  eval {record.eval_seconds:5.1f}s"
    )


def run_with_progress(config: RunConfig, out: Path | None, label: str = "", verbose: bool = True):
    """Run `config` with a rich progress bar over rounds; returns the `RunResult`."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rounds"),
        TimeElapsedColumn(),
        console=console,
        transient=not verbose,
    ) as progress:
        task = progress.add_task(label or config.acquisition, total=config.rounds + 1)

        def on_round(record: RoundRecord) -> None:
            if verbose:
                progress.console.print(_round_line(record))
            progress.update(task, completed=record.round + 1)

        def on_resume(records: list[RoundRecord]) -> None:
            progress.console.print(_resume_line(config, out, records))
            progress.update(task, completed=records[-1].round + 1)

        return run_active_learning(config, out, on_round=on_round, on_resume=on_resume)


@with_setting_options(run_setting_parameters())
def run_command(
    out: Annotated[Path, typer.Option(help="run directory: config.json, rounds.parquet, checkpoint.pt")] = Path("runs/run"),
    preset: Annotated[
        Optional[str], typer.Option(
            help="paper or quick: the protocol for --dataset (`robustal presets`); flags override it",
            show_default="none",
        )
    ] = None,
    **values,
) -> None:
    """One active-learning run; resumes from OUT if it was interrupted.

    Every setting of robustal.config.RunConfig has a flag; one left out takes the --preset's value, else the default shown.
    """
    settings = given_settings(values)
    if preset is not None:
        settings = apply_preset(preset, settings.get("dataset", "digits"), settings)
    config = make_config(**settings)
    prepare_output_dir(out)
    console.print(f"run {config.run_id()} -> {out}")
    if config.fast:  # what --fast resolved to on this machine (recorded in config.json)
        console.print(
            f"--fast: precision {config.precision}, channels_last {config.channels_last}, fold_batchnorm "
            f"{config.fold_batchnorm}, cuda_graphs {config.cuda_graphs}, compile {config.compile}"
        )
    try:
        result = run_with_progress(config, out)
    except KeyboardInterrupt:
        raise _interrupted(out) from None
    last = result.records[-1]
    console.print(
        f"[bold]final[/bold]: {last.labeled} labels, accuracy {100 * last.clean_accuracy:.2f}%, "
        f"robustness {100 * last.robust_accuracy:.2f}%  (results in {out})"
    )


# Robust AL on digits with the `quick` preset (PGD training): every function runs in seconds on 2 CPU cores.
DEMO_SETTINGS = dict(apply_preset("quick", "digits"), training="pgd")


def demo_command(
    out: Annotated[Path, typer.Option(help="folder for results.parquet and learning_curves.png")] = Path("demo-out"),
    acquisitions: Annotated[
        Optional[str], typer.Option(help="comma-separated functions; default: all registered")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Robust active learning on the bundled digits with every acquisition function."""
    import pandas as pd

    names = acquisitions.split(",") if acquisitions else available_acquisitions()
    configs = [make_config(**DEMO_SETTINGS, acquisition=name, seed=seed) for name in names]
    prepare_output_dir(out)
    console.print(
        f"robust AL on digits: {len(names)} acquisition functions, {DEMO_SETTINGS['initial']} -> "
        f"{DEMO_SETTINGS['budget']} labels, PGD-{DEMO_SETTINGS['train_steps']} training, eps {DEMO_SETTINGS['eps']}"
    )
    frames = []
    start = time.perf_counter()
    try:
        for config in configs:
            run_dir = out / "runs" / config.acquisition
            frames.append(run_with_progress(config, run_dir, label=config.acquisition, verbose=False).table())
    except KeyboardInterrupt:
        raise _interrupted(out) from None
    rounds = pd.concat(frames, ignore_index=True)
    rounds.drop(columns=["selected"]).to_parquet(out / "results.parquet", index=False)
    plot_learning_curves(rounds, out / "learning_curves.png", title="robust active learning on digits (PGD training)")
    console.print(_final_table(rounds))
    console.print(f"{time.perf_counter() - start:.0f}s; results: {out / 'results.parquet'}, plot: {out / 'learning_curves.png'}")


def _final_table(rounds) -> Table:
    final = rounds[rounds["labeled"] == rounds["labeled"].max()].sort_values("robust_accuracy", ascending=False)
    table = Table(title=f"at {int(final['labeled'].iloc[0])} labels (test split)")
    for column in ("acquisition", "accuracy %", "robustness %", "train s", "select s"):
        table.add_column(column, justify="left" if column == "acquisition" else "right")
    totals = rounds.groupby("acquisition")[["train_seconds", "select_seconds"]].sum()
    for row in final.itertuples():
        table.add_row(
            row.acquisition,
            f"{100 * row.clean_accuracy:.2f}",
            f"{100 * row.robust_accuracy:.2f}",
            f"{totals.loc[row.acquisition, 'train_seconds']:.1f}",
            f"{totals.loc[row.acquisition, 'select_seconds']:.2f}",
        )
    return table
