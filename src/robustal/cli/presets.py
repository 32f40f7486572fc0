"""``robustal presets``: the settings of every preset, one table per preset."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from robustal.errors import unknown_name_error
from robustal.presets import PRESET_DESCRIPTIONS, PRESETS, available_presets

ATTACK_FIELDS = ("eps", "step_size")


def format_setting(field: str, value: Any) -> str:
    """A preset value for display: radii as k/255 when exact, None as "all", thousands separated."""
    if value is None:
        return "all"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    steps = value * 255
    if field in ATTACK_FIELDS and abs(steps - round(steps)) < 1e-9 and round(steps) > 0:
        return f"{round(steps)}/255"
    return f"{value:g}"


def preset_table(preset: str) -> Table:
    """The settings of `preset`: one row per field, one column per dataset."""
    datasets = PRESETS[preset]
    table = Table(title=f"--preset {preset}: {PRESET_DESCRIPTIONS[preset]}")
    table.add_column("setting")
    for dataset in datasets:
        table.add_column(dataset, justify="right")
    fields = [field for field in next(iter(datasets.values())) if field != "dataset"]
    for field in fields:
        table.add_row(field, *(format_setting(field, settings.get(field)) for settings in datasets.values()))
    return table


def presets_command(
    preset: Annotated[Optional[str], typer.Argument(help="paper or quick; default: all presets")] = None,
) -> None:
    """Show the presets (`robustal run --preset NAME`; any flag overrides a preset value)."""
    if preset is not None and preset not in PRESETS:
        raise unknown_name_error("preset", preset, available_presets())
    console = Console()
    for name in [preset] if preset else available_presets():
        console.print(preset_table(name))
