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
from robustal.config import RunConfig, make_config
from robustal.loop import RoundRecord, run_active_learning
from robustal.outputs import prepare_output_dir
from robustal.presets import apply_preset
from robustal.report import plot_learning_curves

console = Console()


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

        return run_active_learning(config, out, on_round=on_round)


def run_command(
    out: Annotated[Path, typer.Option(help="run directory: config.json, rounds.parquet, checkpoint.pt")] = Path("runs/run"),
    preset: Annotated[
        Optional[str], typer.Option(help="paper or quick: the protocol for --dataset (`robustal presets`); flags override it")
    ] = None,
    dataset: Annotated[Optional[str], typer.Option(help="dataset name (see `robustal data list`)")] = None,
    model: Annotated[Optional[str], typer.Option(help="architecture; default: the dataset's")] = None,
    acquisition: Annotated[Optional[str], typer.Option(help="acquisition function")] = None,
    training: Annotated[Optional[str], typer.Option(help="standard or pgd (adversarial training)")] = None,
    initial: Annotated[Optional[int], typer.Option(help="random initial labeled set")] = None,
    per_round: Annotated[Optional[int], typer.Option(help="samples labeled per round")] = None,
    budget: Annotated[Optional[int], typer.Option(help="labeled samples at the end")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="epochs per round")] = None,
    batch_size: Annotated[Optional[int], typer.Option()] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adam or sgd")] = None,
    lr: Annotated[Optional[float], typer.Option(help="learning rate")] = None,
    lr_schedule: Annotated[Optional[str], typer.Option(help="constant or cyclic")] = None,
    eps: Annotated[Optional[float], typer.Option(help="L-inf attack radius (training and evaluation)")] = None,
    step_size: Annotated[Optional[float], typer.Option(help="PGD step size")] = None,
    train_steps: Annotated[Optional[int], typer.Option(help="PGD steps in adversarial training")] = None,
    eval_steps: Annotated[Optional[int], typer.Option(help="PGD steps for robust accuracy")] = None,
    validation_size: Annotated[Optional[int], typer.Option(help="validation samples for model selection")] = None,
    test_size: Annotated[Optional[int], typer.Option(help="test samples evaluated")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="resize images (MNIST default 32; 28 keeps native)")] = None,
    augment: Annotated[
        Optional[bool], typer.Option("--augment/--no-augment", help="random crop + flip; default: on for SVHN, CIFAR-10")
    ] = None,
    retrain_from_scratch: Annotated[bool, typer.Option("--retrain-from-scratch", help="reinitialise every round")] = False,
    seed: Annotated[Optional[int], typer.Option(help="seed of every random choice")] = None,
    precision: Annotated[Optional[str], typer.Option(help="fp32, or bf16 (bf16 autocast, fp32 weights; faster)")] = None,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC weights (faster convolutions)")] = False,
    fold_batchnorm: Annotated[bool, typer.Option("--fold-batchnorm", help="attacks fold BatchNorm, fuse CPU kernels")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model")] = False,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="attacks replay CUDA graphs (GPU only)")] = False,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda")] = None,
    data_root: Annotated[Optional[Path], typer.Option(help="folder with datasets; default $ROBUSTAL_DATA")] = None,
) -> None:
    """One active-learning run; resumes from OUT if it was interrupted."""
    settings = {name: value for name, value in locals().items() if value is not None and name not in ("out", "preset")}
    for flag in ("retrain_from_scratch", "channels_last", "fold_batchnorm", "compile", "cuda_graphs"):
        if not settings[flag]:
            settings.pop(flag)
    if data_root is not None:
        settings["data_root"] = str(data_root)
    if preset is not None:
        settings = apply_preset(preset, dataset or "digits", settings)
    config = make_config(**settings)
    prepare_output_dir(out)
    console.print(f"run {config.run_id()} -> {out}")
    result = run_with_progress(config, out)
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
    for config in configs:
        result = run_with_progress(config, out / "runs" / config.acquisition, label=config.acquisition, verbose=False)
        frames.append(result.table())
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
