"""``robustal data list`` and ``robustal data download NAME``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from robustal.data import dataset_info, resolve_data_root
from robustal.data.download import all_statuses, download_dataset

data_app = typer.Typer(
    help="Datasets: what the data root holds, and verified downloads of the official files.",
    no_args_is_help=True,
)

STATE_STYLES = {"verified": "green", "present": "yellow", "corrupt": "bold red", "missing": "red", "unknown": "dim"}
DataRootOption = Annotated[Optional[Path], typer.Option(help="folder with datasets; default $ROBUSTAL_DATA, else ~/.cache/robustal")]


@data_app.command("list")
def list_command(data_root: DataRootOption = None) -> None:
    """Each dataset as verified (checksums match), present (checksums differ), corrupt (a file cannot be decoded) or missing."""
    root = resolve_data_root(data_root)
    table = Table(title=f"datasets in {root}")
    for column in ("dataset", "state", "default model", "description", "detail"):
        table.add_column(column)
    for status in all_statuses(root):
        info = dataset_info(status.name)
        style = STATE_STYLES[status.state]
        table.add_row(status.name, f"[{style}]{status.state}[/{style}]", info.default_model, info.description, status.detail)
    Console().print(table)


@data_app.command("download")
def download_command(
    name: Annotated[str, typer.Argument(help="mnist, fashion-mnist, svhn or cifar10")],
    data_root: DataRootOption = None,
    mirror: Annotated[Optional[str], typer.Option(help="base URL tried first, as MIRROR/NAME/FILE")] = None,
    force: Annotated[bool, typer.Option("--force", help="download again even if verified files are there")] = False,
) -> None:
    """Download the official files of NAME into DATA_ROOT/NAME/, verified by their published checksums."""
    paths = download_dataset(name, data_root, mirror=mirror, force=force, show_progress=True)
    Console().print(f"[green]verified[/green] {name}: " + ", ".join(str(path) for path in paths))
