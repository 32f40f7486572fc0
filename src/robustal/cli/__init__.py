"""The ``robustal`` command line: ``run``, ``demo`` and the subcommands of later layers.

Each subcommand lives in its own module, imported only when that subcommand runs or shows its
own help: ``robustal --help`` lists them from `SUBCOMMANDS` without importing torch, numba,
matplotlib or DuckDB (seconds of start-up).
"""

from __future__ import annotations

import importlib
import sys
from typing import NamedTuple

import click
import typer
from typer.core import TyperGroup

from robustal.errors import RobustALError


class Subcommand(NamedTuple):
    """Where a subcommand lives and its line in ``robustal --help``."""

    module: str  # in robustal.cli
    attribute: str  # a command function or a `typer.Typer` of subcommands
    summary: str  # the first paragraph of the command's own help (a test keeps them equal)


SUBCOMMANDS = {
    "run": Subcommand("run", "run_command", "One active-learning run; resumes from OUT if it was interrupted."),
    "demo": Subcommand(
        "run", "demo_command", "Robust active learning on the bundled digits with every acquisition function."
    ),
    "retrain": Subcommand(
        "retrain",
        "retrain_command",
        "Test selection: label BUDGETS test inputs and fine-tune a trained model adversarially on them.",
    ),
    "presets": Subcommand(
        "presets",
        "presets_command",
        "Show the presets (`robustal run --preset NAME`; any flag overrides a preset value).",
    ),
    "report": Subcommand(
        "report",
        "report_command",
        "Write an HTML report of a study: learning curves, the paper's tables (final budget, area under the "
        "learning curve), what each function selects, retraining gains, exact settings.",
    ),
    "evaluate": Subcommand(
        "evaluate",
        "evaluate_command",
        "AutoAttack robust accuracy of the final model of a run, or of every finished run of a study.",
    ),
    "study": Subcommand(
        "study", "study_app", "Studies: grids of runs (datasets x models x acquisition functions x training x seeds)."
    ),
    "data": Subcommand(
        "data", "data_app", "Datasets: what the data root holds, and verified downloads of the official files."
    ),
    "label": Subcommand(
        "label",
        "label_app",
        "Label your own images: a local web page asks for labels, robust active learning chooses which.",
    ),
    "speedtest": Subcommand(
        "speedtest",
        "speedtest_command",
        "Measure the execution settings on this machine (about 30 s) and print which to use.",
    ),
}


def load_subcommand(name: str) -> click.Command:
    """The click command of subcommand `name` (a key of `SUBCOMMANDS`), importing its module."""
    entry = SUBCOMMANDS[name]
    target = getattr(importlib.import_module(f"robustal.cli.{entry.module}"), entry.attribute)
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class _LazyGroup(TyperGroup):
    """The top-level group: lists every subcommand by its summary, imports one when it is run."""

    def __init__(self, **attributes) -> None:
        super().__init__(**attributes)
        for name, entry in SUBCOMMANDS.items():
            self.add_command(click.Command(name, short_help=entry.summary))  # a placeholder, never run

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        return name, load_subcommand(name) if name in SUBCOMMANDS else command, rest


app = typer.Typer(
    cls=_LazyGroup,
    help="Robust active learning: choose which samples to label for accurate and robust models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _main_options() -> None:
    # a callback makes `app` a group whose subcommands `_LazyGroup` supplies
    pass


def main() -> None:
    """Entry point: robustal errors become one red line and exit code 2, not a traceback."""
    try:
        app()
    except RobustALError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(2)
