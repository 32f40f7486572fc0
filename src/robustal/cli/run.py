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
from robustal.cli.presets import format_setting
from robustal.config import RunConfig, make_config
from robustal.errors import ConfigError
from robustal.loop import RoundRecord, run_active_learning
from robustal.outputs import prepare_output_dir
from robustal.presets import PRESETS, apply_preset
from robustal.report import plot_learning_curves

console = Console()

# the settings some preset sets (its value for --dataset wins over RunConfig's default)
PRESET_FIELDS = {field for table in PRESETS.values() for values in table.values() for field in values} - {"dataset"}
# what leaving out a setting whose RunConfig default is None means
UNSET_MEANS = {
    "model": "the dataset's",
    "image_size": "the dataset's",
    "augment": "the dataset's: on for SVHN, CIFAR-10",
    "data_root": "$ROBUSTAL_DATA, else ~/.cache/robustal",
}


def default_text(field: str) -> str:
    """What ``robustal run`` uses for RunConfig `field` when its flag is left out, for the help's
    ``[default: ...]``: RunConfig's default (or what None means), then the preset's value where
    a preset sets one."""
    text = UNSET_MEANS.get(field) or format_setting(field, RunConfig.model_fields[field].default)
    return f"{text}, or the --preset's" if field in PRESET_FIELDS else text


def setting_option(field: str, help: str = "", *flags: str):
    """A `typer.Option` for RunConfig `field` whose help shows what leaving it out means."""
    return typer.Option(*flags, help=help, show_default=default_text(field))


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


def parse_options(items: list[str]) -> dict:
    """``KEY=VALUE`` texts as a mapping; values read as YAML scalars (``bins=20`` is the number 20)."""
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--acquisition-option {item!r}: write KEY=VALUE, e.g. quota=proportional")
        options[key.strip()] = yaml.safe_load(value)
    return options


def run_command(
    out: Annotated[Path, typer.Option(help="run directory: config.json, rounds.parquet, checkpoint.pt")] = Path("runs/run"),
    preset: Annotated[
        Optional[str], typer.Option(
            help="paper or quick: the protocol for --dataset (`robustal presets`); flags override it",
            show_default="none",
        )
    ] = None,
    dataset: Annotated[
        Optional[str], setting_option("dataset", "dataset name (see `robustal data list`), a .npz path, folder:PATH or csv:FILE.csv")
    ] = None,
    model: Annotated[Optional[str], setting_option("model", "architecture")] = None,
    acquisition: Annotated[Optional[str], setting_option("acquisition", "acquisition function")] = None,
    acquisition_option: Annotated[
        Optional[list[str]],
        typer.Option(
            "--acquisition-option",
            help="an option of the function as KEY=VALUE, e.g. quota=proportional (repeatable)",
            show_default="the function's defaults",
        ),
    ] = None,
    training: Annotated[Optional[str], setting_option("training", "standard or pgd (adversarial training)")] = None,
    warm_up: Annotated[
        Optional[str], setting_option("warm_up", "round 0: 'same' training as the others, or 'standard' (the paper's warm-up)")
    ] = None,
    initial: Annotated[Optional[int], setting_option("initial", "random initial labeled set")] = None,
    per_round: Annotated[Optional[int], setting_option("per_round", "samples labeled per round")] = None,
    budget: Annotated[Optional[int], setting_option("budget", "labeled samples at the end")] = None,
    epochs: Annotated[Optional[int], setting_option("epochs", "epochs per round")] = None,
    batch_size: Annotated[Optional[int], setting_option("batch_size")] = None,
    optimizer: Annotated[Optional[str], setting_option("optimizer", "adam or sgd")] = None,
    lr: Annotated[Optional[float], setting_option("lr", "learning rate")] = None,
    lr_schedule: Annotated[Optional[str], setting_option("lr_schedule", "constant or cyclic")] = None,
    eps: Annotated[Optional[float], setting_option("eps", "L-inf attack radius (training and evaluation)")] = None,
    step_size: Annotated[Optional[float], setting_option("step_size", "PGD step size")] = None,
    train_steps: Annotated[Optional[int], setting_option("train_steps", "PGD steps in adversarial training")] = None,
    eval_steps: Annotated[Optional[int], setting_option("eval_steps", "PGD steps for robust accuracy")] = None,
    validation_size: Annotated[
        Optional[int], setting_option("validation_size", "validation samples for model selection")
    ] = None,
    test_size: Annotated[Optional[int], setting_option("test_size", "test samples evaluated")] = None,
    image_size: Annotated[Optional[int], setting_option("image_size", "resize images (28 keeps MNIST native)")] = None,
    augment: Annotated[
        Optional[bool], setting_option("augment", "random crop + flip", "--augment/--no-augment")
    ] = None,
    retrain_from_scratch: Annotated[bool, typer.Option("--retrain-from-scratch", help="reinitialise every round")] = False,
    seed: Annotated[Optional[int], setting_option("seed", "seed of every random choice")] = None,
    precision: Annotated[
        Optional[str], setting_option("precision", "fp32, or bf16 (bf16 autocast, fp32 weights; faster)")
    ] = None,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC weights (faster convolutions)")] = False,
    fold_batchnorm: Annotated[bool, typer.Option("--fold-batchnorm", help="attacks fold BatchNorm, fuse CPU kernels")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model")] = False,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="attacks replay CUDA graphs (GPU only)")] = False,
    fast: Annotated[
        bool, typer.Option("--fast", help="the fastest execution settings measured for this device (robustal speedtest)")
    ] = False,
    keep_round_checkpoints: Annotated[
        bool, typer.Option("--keep-round-checkpoints", help="keep every round's model (robustal evaluate --round)")
    ] = False,
    device: Annotated[Optional[str], setting_option("device", "auto, cpu, cuda")] = None,
    data_root: Annotated[Optional[Path], setting_option("data_root", "folder with datasets")] = None,
) -> None:
    """One active-learning run; resumes from OUT if it was interrupted."""
    settings = {name: value for name, value in locals().items() if value is not None and name not in ("out", "preset")}
    if acquisition_option:
        settings["acquisition_options"] = parse_options(settings.pop("acquisition_option"))
    for flag in (
        "retrain_from_scratch", "channels_last", "fold_batchnorm", "compile", "cuda_graphs", "fast", "keep_round_checkpoints"
    ):
        if not settings[flag]:
            settings.pop(flag)
    if data_root is not None:
        settings["data_root"] = str(data_root)
    if preset is not None:
        settings = apply_preset(preset, dataset or "digits", settings)
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
