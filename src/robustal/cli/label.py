"""``robustal label``: label your own images, with robust active learning choosing what to ask.

``init`` creates a project from a folder of images, ``serve`` opens the labeling page, ``status``
shows the progress and the rounds, ``train`` runs a due round in the foreground, ``export`` and
``import`` exchange labels (csv, npz, imagefolder, Label Studio).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from robustal.cli.settings import given_settings, run_setting_parameters, with_setting_options
from robustal.errors import ConfigError

console = Console(soft_wrap=True)  # paths in messages stay whole, to copy
label_app = typer.Typer(
    help="Label your own images: a local web page asks for labels, robust active learning chooses which.",
    no_args_is_help=True,
    add_completion=False,
)
@label_app.command("init")
@with_setting_options(run_setting_parameters(exclude=("dataset",)))  # a project's images are its dataset
def init_command(
    project: Annotated[Path, typer.Argument(help="a new folder for the project")],
    images: Annotated[Optional[Path], typer.Option(help="folder of images to label (searched recursively)")] = None,
    classes: Annotated[Optional[str], typer.Option(help="class names, comma-separated: cat,dog,bird")] = None,
    labeled: Annotated[
        Optional[Path], typer.Option(help="folder of images already labeled, one subfolder per class (names the classes)")
    ] = None,
    validation: Annotated[int, typer.Option(help="random images asked first, to select models on (validation set)")] = 100,
    overflow: Annotated[
        Optional[int],
        typer.Option(help="images queued beyond each batch, asked while the next round trains", show_default="--per-round"),
    ] = None,
    preset: Annotated[
        Optional[str],
        typer.Option(help="quick or paper: MNIST's protocol for grayscale images, CIFAR-10's for colour; flags override it"),
    ] = None,
    **values,
) -> None:
    """Create a labeling project from a folder of images.

    The images are decoded once; the page then asks a random validation set (--validation), a
    random initial batch (--initial) and, after each training round, the batch the acquisition
    function ranks first (--per-round), up to --budget training labels. The flags of `robustal
    run` (all but --dataset) set how rounds train and choose (--model, --acquisition, --epochs, ...)."""
    from robustal.label.project import LabelProject

    settings = given_settings(values)
    if preset is not None:
        settings["preset"] = preset
    names = [name for name in classes.split(",")] if classes is not None else None
    created = LabelProject.init(project, images, names, labeled, settings, validation, overflow)
    left_out = created.left_out()
    progress = created.progress()
    console.print(
        f"project {created.path}: {len(created.images)} images, {len(created.classes)} classes ({', '.join(created.classes)}), "
        f"{progress.labeled} already labeled; run {created.config.run_id()}"
    )
    for kind, entries in left_out.items():
        if entries:
            console.print(f"left out {len(entries)} {kind} file(s), e.g. {entries[0]['path']} (all: robustal label status {project})")
    config = created.config
    console.print(
        f"asks {progress.validation_total} validation images, then {config.initial} random ones, then {config.per_round} "
        f"per round chosen by {config.acquisition} up to {config.budget} training labels ({config.training} training, "
        f"model {config.model_name}, {created.meta['image_size']}px)"
    )
    console.print(f"next: robustal label serve {project}")


@label_app.command("serve")
def serve_command(
    project: Annotated[Path, typer.Argument(help="the project folder")],
    host: Annotated[str, typer.Option(help="address to listen on; other than loopback needs --token")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    token: Annotated[Optional[str], typer.Option(help="secret every request must carry (required off loopback)")] = None,
) -> None:
    """Serve the labeling page on this machine (needs the extra: pip install 'robustal\\[label]')."""
    try:
        from robustal.label import server
    except ImportError as error:
        raise ConfigError(f"the labeling page needs {error.name or 'its libraries'}: pip install 'robustal[label]'") from None
    server.serve(project, host=host, port=port, token=token)


@label_app.command("status")
def status_command(project: Annotated[Path, typer.Argument(help="the project folder")]) -> None:
    """Progress, training rounds and left-out files of a project."""
    from robustal.label.project import LabelProject

    opened = LabelProject.open(project)
    progress = opened.progress()
    state = "finished (the budget is labeled)" if progress.finished else f"round {progress.round}"
    console.print(
        f"{opened.path}: {state}; {progress.labeled} labeled, {progress.skipped} skipped, {progress.asked} asked; "
        f"validation {progress.validation_labeled}/{progress.validation_total}; this round {progress.round_done}/{progress.round_size}"
        + ("; training now" if progress.training else "")
    )
    if progress.training_error:
        console.print(f"[red]last training failed[/red]: {progress.training_error} (details: {opened.path / 'trainer.log'})")
    rounds = opened.rounds()
    if rounds:
        table = Table(title="rounds (accuracy on the labeled validation images)")
        for column in ("round", "labels", "accuracy %", "robustness %", "finished"):
            table.add_column(column, justify="left" if column == "finished" else "right")
        for summary in rounds:
            table.add_row(
                str(summary.round), str(summary.labeled), f"{100 * summary.clean_accuracy:.1f}",
                f"{100 * summary.robust_accuracy:.1f}", summary.finished_at,
            )  # fmt: skip
        console.print(table)
    for kind, entries in opened.left_out().items():
        for entry in entries:
            console.print(f"{kind}: {entry['path']} ({entry.get('reason') or 'a copy of item ' + str(entry.get('item'))})")


@label_app.command("train")
def train_command(project: Annotated[Path, typer.Argument(help="the project folder")]) -> None:
    """Train the project's current round now, in this terminal (the page starts rounds by itself)."""
    from robustal.label.project import LabelProject
    from robustal.label.trainer import run_trainer

    opened = LabelProject.open(project)
    for summary in run_trainer(opened):
        console.print(
            f"round {summary.round}: {summary.labeled} labels, validation accuracy {100 * summary.clean_accuracy:.1f}%, "
            f"robustness {100 * summary.robust_accuracy:.1f}%"
        )


@label_app.command("export")
def export_command(
    project: Annotated[Path, typer.Argument(help="the project folder")],
    format: Annotated[str, typer.Option("--format", help="csv, npz, imagefolder or label-studio")],  # noqa: A002
    out: Annotated[Path, typer.Option(help="file (folder for imagefolder) to write; never overwritten")],
    image: Annotated[str, typer.Option(help="label-studio: the image as its file 'path' or inlined as a 'data' URL")] = "path",
) -> None:
    """Write the current labels (csv, npz, imagefolder) or every image as Label Studio tasks."""
    from robustal.label.exchange import export, labeling_config
    from robustal.label.project import LabelProject

    opened = LabelProject.open(project)
    written = export(opened, format, out, image)
    console.print(f"wrote {written} {'tasks' if format == 'label-studio' else 'labeled images'} to {out}")
    if format == "label-studio":
        console.print("Label Studio labeling config for these tasks (Settings > Labeling Interface > Code):")
        console.print(labeling_config(opened), markup=False, highlight=False)


@label_app.command("import")
def import_command(
    project: Annotated[Path, typer.Argument(help="the project folder")],
    file: Annotated[Path, typer.Argument(help="a Label Studio JSON export")],
) -> None:
    """Add the labels of a Label Studio JSON export (appended: earlier labels stay in the log)."""
    from robustal.label.exchange import import_label_studio
    from robustal.label.project import LabelProject

    opened = LabelProject.open(project)
    result = import_label_studio(opened, file)
    console.print(
        f"imported {result.labeled} labels ({result.unchanged} tasks already had that label, "
        f"{result.without_annotation} had no annotation)"
    )
    if opened.maybe_start_training():
        console.print(f"a training round started in the background (log: {opened.path / 'trainer.log'})")
