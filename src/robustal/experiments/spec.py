"""Study specs: a grid of run settings (YAML) expanded into one `RunConfig` per run.

A spec has three keys::

    name: quick                  # optional label of the study
    settings:                    # shared by every run: any RunConfig setting, and `preset`
      preset: quick              # fill in a named protocol per dataset (robustal.presets)
      budget: 300
    grid:                        # every combination of these lists is one run
      dataset: [digits]
      acquisition: [random, entropy]
      training: [standard, pgd]
      seed: [0, 1, 2]

Grid keys are `RunConfig` settings (usually dataset, model, acquisition, training and seed,
but any setting can be swept); the runs are their Cartesian product, in the order the keys
are written. Each run's id is `RunConfig.run_id()`, a hash of its fully resolved settings,
so combinations that resolve to the same settings are one run, computed once.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustal.acquisition import build_acquisition
from robustal.config import RunConfig, make_config
from robustal.errors import ConfigError, RobustALError

SPEC_KEYS = ("name", "settings", "grid")
PRESET_KEY = "preset"


@dataclass(frozen=True)
class StudySpec:
    """A study: shared `settings` (with an optional ``preset``) and a `grid` of value lists."""

    grid: dict[str, list[Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    name: str = "study"

    def __post_init__(self) -> None:
        fields = list(RunConfig.model_fields)
        for key, values in self.grid.items():
            _check_setting_name(key, "grid", fields)
            if not isinstance(values, list) or not values:
                raise ConfigError(
                    f"grid.{key} must be a non-empty list of values, e.g. `{key}: [a, b]`, not {values!r}; "
                    "put a single shared value under `settings` instead"
                )
        for key in self.settings:
            _check_setting_name(key, "settings", fields + [PRESET_KEY])
        both = sorted(set(self.grid) & set(self.settings))
        if both:
            raise ConfigError(f"{', '.join(both)} is both in `grid` and in `settings`: keep it in one of them")
        if PRESET_KEY in self.settings and not isinstance(self.settings[PRESET_KEY], str):
            raise ConfigError(f"settings.preset must be a preset name, not {self.settings[PRESET_KEY]!r}")

    @classmethod
    def from_dict(cls, data: Any, source: str = "study spec") -> "StudySpec":
        """The spec of a parsed YAML mapping; `source` names it in error messages."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must be a mapping with keys {', '.join(SPEC_KEYS)}, not {type(data).__name__}")
        unknown = sorted(set(data) - set(SPEC_KEYS))
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} in {source}; valid keys: {', '.join(SPEC_KEYS)}")
        if "grid" not in data:
            raise ConfigError(f"{source} has no `grid`: list the values to combine, e.g. `grid: {{acquisition: [random]}}`")
        for key in ("grid", "settings"):
            if not isinstance(data.get(key) or {}, dict):
                raise ConfigError(f"`{key}` in {source} must be a mapping of setting names to values")
        name = str(data.get("name") or "study")
        return cls(grid=dict(data["grid"] or {}), settings=dict(data.get("settings") or {}), name=name)

    def to_dict(self) -> dict[str, Any]:
        """The spec as the mapping `from_dict` reads (what ``study.yaml`` stores)."""
        return {"name": self.name, "settings": dict(self.settings), "grid": dict(self.grid)}

    def expand(self) -> list[RunConfig]:
        """One validated `RunConfig` per distinct run of the grid, in grid order.

        Invalid values raise `ConfigError` naming the grid combination they came from.
        """
        keys = list(self.grid)
        shared = {key: value for key, value in self.settings.items() if key != PRESET_KEY}
        configs: dict[str, RunConfig] = {}
        for values in itertools.product(*(self.grid[key] for key in keys)):
            combination = dict(zip(keys, values))
            try:
                config = make_config(**self._resolve({**shared, **combination}))
            except RobustALError as error:
                where = ", ".join(f"{key}={value}" for key, value in combination.items())
                raise ConfigError(f"run ({where}): {error}") from None
            configs.setdefault(config.run_id(), config)
        _check_acquisition_options(configs.values())
        return list(configs.values())

    def _resolve(self, settings: dict[str, Any]) -> dict[str, Any]:
        preset = self.settings.get(PRESET_KEY)
        if preset is None:
            return settings
        from robustal.presets import apply_preset  # the presets layer sits beside the CLI

        return apply_preset(preset, settings.get("dataset", RunConfig.model_fields["dataset"].default), settings)


def _check_setting_name(key: str, where: str, valid: list[str]) -> None:
    if key not in valid:
        raise ConfigError(f"unknown setting {key!r} in `{where}`; valid settings: {', '.join(sorted(valid))}")


def _check_acquisition_options(configs) -> None:
    # building an acquisition function is cheap; doing it here reports bad options before any run starts
    checked = set()
    for config in configs:
        key = (config.acquisition, repr(sorted(config.acquisition_options.items())))
        if key not in checked:
            checked.add(key)
            build_acquisition(config.acquisition, **config.acquisition_options)


def load_study_spec(path: str | os.PathLike) -> StudySpec:
    """Read a study spec from a YAML file (see the module docstring for its keys)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study spec {path} not found: pass the path of a YAML file (see examples/quick.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    return StudySpec.from_dict(data, source=str(path))
