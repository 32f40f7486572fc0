"""The ``robustal`` command line: ``run``, ``demo`` and the subcommands of later layers."""

from __future__ import annotations

import sys

import typer

from robustal.cli.data import data_app
from robustal.cli.evaluate import evaluate_command
from robustal.cli.presets import presets_command
from robustal.cli.report import report_command
from robustal.cli.retrain import retrain_command
from robustal.cli.run import demo_command, run_command
from robustal.cli.study import study_app
from robustal.errors import RobustALError

app = typer.Typer(
    help="Robust active learning: choose which samples to label for accurate and robust models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("run")(run_command)
app.command("demo")(demo_command)
app.command("retrain")(retrain_command)
app.add_typer(study_app, name="study")
app.add_typer(data_app, name="data")
app.command("presets")(presets_command)
app.command("report")(report_command)
app.command("evaluate")(evaluate_command)


def main() -> None:
    """Entry point: robustal errors become one red line and exit code 2, not a traceback."""
    try:
        app()
    except RobustALError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(2)
