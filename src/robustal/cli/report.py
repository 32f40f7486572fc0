"""``robustal report STUDY_DIR -o OUT``: a study's results as an HTML page with PNG figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robustal.cli.study import reporting_damage
from robustal.outputs import prepare_output_dir
from robustal.report import write_report


def report_command(
    study_dir: Annotated[Path, typer.Argument(help="study directory (the --out of `robustal study run`)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for index.html and figures/*.png")] = Path("report"),
) -> None:
    """Write an HTML report of a study: learning curves, the paper's tables (final budget, area
    under the learning curve), what each function selects, retraining gains, exact settings."""
    prepare_output_dir(out)
    with reporting_damage():
        page = write_report(study_dir, out)
    typer.echo(f"report -> {page}  (figures in {page.parent / 'figures'})")
