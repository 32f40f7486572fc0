"""Command-line options generated from the settings' pydantic fields: one source of truth.

A setting of `RunConfig` is declared once, with its type, bounds and description; `robustal
run` (and every command that takes a run's settings: ``robustal label init``, the fine-tuning
flags of ``robustal retrain``) gets its flag from that declaration: ``--name-with-dashes``, the
field's type, its description as help, and what leaving it out means. Values left out are not
passed on, so presets and defaults decide them; pydantic validates what is given.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Optional

import typer
import yaml

from robustal.cli.presets import format_setting
from robustal.config import RunConfig
from robustal.errors import ConfigError
from robustal.presets import PRESETS

# the settings some preset sets (its value for --dataset wins over RunConfig's default)
PRESET_FIELDS = {field for table in PRESETS.values() for values in table.values() for field in values} - {"dataset"}
# what leaving out a setting whose RunConfig default is None means
UNSET_MEANS = {
    "model": "the dataset's",
    "image_size": "the dataset's",
    "augment": "the dataset's: on for SVHN, CIFAR-10",
    "validation_size": "all",
    "test_size": "all",
    "data_root": "$ROBUSTAL_DATA, else ~/.cache/robustal",
}
ACQUISITION_OPTION = "acquisition_option"  # the repeatable --acquisition-option KEY=VALUE


def default_text(field: str) -> str:
    """What ``robustal run`` uses for RunConfig `field` when its flag is left out, for the help's
    ``[default: ...]``: RunConfig's default (or what None means), then the preset's value where
    a preset sets one."""
    text = UNSET_MEANS.get(field) or format_setting(field, RunConfig.model_fields[field].default)
    return f"{text}, or the --preset's" if field in PRESET_FIELDS else text


def _value_type(annotation: Any) -> type:
    """The plain type of a field annotation (``int | None`` -> int)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return annotation


def setting_parameter(name: str, show_default: str | None = None) -> inspect.Parameter:
    """The command parameter of RunConfig field `name`: a flag ``--name-with-dashes`` of the
    field's type (``--on/--off`` for booleans, a plain ``--on`` switch where the default is off),
    the field's description as help and `show_default` (else `default_text`) as its default."""
    field = RunConfig.model_fields[name]
    flag = "--" + name.replace("_", "-")
    value_type = _value_type(field.annotation)
    if name == "acquisition_options":  # a mapping: repeatable KEY=VALUE items
        option = typer.Option(
            "--acquisition-option", help="an option of the function as KEY=VALUE, e.g. quota=proportional (repeatable)",
            show_default="the function's defaults",
        )  # fmt: skip
        return _keyword(ACQUISITION_OPTION, Optional[list[str]], option)
    if value_type is bool and field.default is False:  # a switch: given means on
        return _keyword(name, Optional[bool], typer.Option(flag, help=field.description or "", show_default=False))
    if value_type is bool:
        flag = f"{flag}/--no-{flag[2:]}"
    option = typer.Option(flag, help=field.description or "", show_default=show_default or default_text(name))
    return _keyword(name, Optional[value_type], option)


def _keyword(name: str, annotation: Any, option: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[annotation, option])


def run_setting_parameters(exclude: Iterable[str] = ()) -> list[inspect.Parameter]:
    """A flag for every RunConfig setting (but `exclude`), in the order RunConfig declares them."""
    return [setting_parameter(name) for name in RunConfig.model_fields if name not in exclude]


def with_setting_options(settings: list[inspect.Parameter]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate a command function ``f(own parameters..., **values)`` so that typer sees its own
    parameters followed by `settings` (`setting_parameter`s); `values` receives the settings'
    values (`given_settings` turns them into a run's settings)."""

    def decorate(function: Callable[..., None]) -> Callable[..., None]:
        own = [p for p in inspect.signature(function, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
        parameters = [*own, *settings]

        @functools.wraps(function)
        def command(**values: Any) -> None:
            function(**values)

        command.__signature__ = inspect.Signature(parameters)
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return decorate


def parse_options(items: Iterable[str]) -> dict:
    """``KEY=VALUE`` texts as a mapping; values read as YAML scalars (``bins=20`` is the number 20)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--acquisition-option {item!r}: write KEY=VALUE, e.g. quota=proportional")
        options[key.strip()] = yaml.safe_load(value)
    return options


def given_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The settings given on the command line, from the values of `setting_parameter`s: left-out
    flags dropped, ``--acquisition-option`` items parsed into ``acquisition_options``."""
    settings = {name: value for name, value in values.items() if value is not None and name != ACQUISITION_OPTION}
    if values.get(ACQUISITION_OPTION):
        settings["acquisition_options"] = parse_options(values[ACQUISITION_OPTION])
    return settings
