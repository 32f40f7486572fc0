"""Study specs: a grid of run settings (YAML) expanded into one `RunConfig` per run, and
optionally retraining jobs that start from those runs' final checkpoints.

A spec has three keys, and an optional fourth::

    name: quick                  # optional label of the study
    settings:                    # shared by every run: any RunConfig setting, and `preset`
      preset: quick              # fill in a named protocol per dataset (robustal.presets)
      budget: 300
    grid:                        # every combination of these lists is one run
      dataset: [digits]
      acquisition: [random, entropy]
      training: [standard, pgd]
      seed: [0, 1, 2]
    retrain:                     # optional: test selection for retraining (robustal.retraining)
      from: {training: standard} # which runs to start from: settings they must have (a value
                                 #   or a list of values each); default: every run of the grid
      acquisition: [random, dre] # default (or `all`): every registered acquisition function
      budgets: [1%, 2%, 5%]      # required: counts or percentages of the candidate pool
      seeds: [0, 1]              # default: [0]
      settings: {epochs: 5}      # any RetrainConfig setting shared by every retraining job

Grid keys are `RunConfig` settings (usually dataset, model, acquisition, training and seed,
but any setting can be swept); the runs are their Cartesian product, in the order the keys
are written. `grid` may also be a list of such mappings: the study is their union, in order
(e.g. robust AL for every function and seed, standard AL for three functions and one seed).
An acquisition function, in `grid` and in `retrain.acquisition`, is a name or a one-key mapping
from the name to its options: ``[dre, {dre: {quota: proportional}}]`` compares both DRE quotas. Each run's id is `RunConfig.run_id()`, a hash of its fully resolved settings,
so combinations that resolve to the same settings are one run, computed once.

Each retraining job is one source run x one acquisition function x one seed, with all the
budgets (each budget fine-tunes the source's final checkpoint separately, see
`robustal.retraining.run_retraining`). Its id is `RetrainConfig.run_id()` of a config whose
checkpoint is ``runs/<source run id>``, a path relative to the study directory: the id does
not depend on where the study directory is. Budgets are not part of the id, so budgets added
to the spec later are computed into the same job. A job starts once its source run is done.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustal.acquisition import available_acquisitions, build_acquisition, check_acquisition_name
from robustal.config import RunConfig, make_config
from robustal.errors import ConfigError, RobustALError, decoding_errors
from robustal.experiments.store import RUNS_DIR
from robustal.retraining import FINE_TUNING_FIELDS, RetrainConfig, make_retrain_config, normalize_budget

BASE_KEYS = ("name", "settings", "grid")
SPEC_KEYS = (*BASE_KEYS, "retrain", "evaluate")  # `retrain` and `evaluate` are optional
EVALUATE_KEYS = ("attacks", "n")
PRESET_KEY = "preset"
RETRAIN_KEYS = ("from", "acquisition", "budgets", "seeds", "settings")
# RetrainConfig settings that each retraining job gets from the study, not from `retrain.settings`
_JOB_SETTINGS = {
    "checkpoint": "each job starts from the final checkpoint of its source run (choose them with `retrain.from`)",
    "dataset": "each job uses the dataset of its source run",
    "acquisition": "list the functions under `retrain.acquisition`",
    "budgets": "list them under `retrain.budgets`",
    "seed": "list the seeds under `retrain.seeds`",
}


@dataclass(frozen=True)
class RetrainJob:
    """One retraining job of a study: `config` fine-tunes the final checkpoint of run `source_run_id`."""

    source_run_id: str
    config: RetrainConfig

    @property
    def job_id(self) -> str:
        """The job's stable id (`RetrainConfig.run_id`); its directory is ``retrain/<job id>``."""
        return self.config.run_id()


@dataclass(frozen=True)
class RetrainSpec:
    """The ``retrain`` section of a study spec (see the module docstring).

    `sources` maps run settings to the values a source run must have (any of a list);
    `settings` are RetrainConfig settings shared by every job.
    """

    budgets: tuple[str, ...]
    acquisition: tuple[str, ...] = field(default_factory=lambda: tuple(available_acquisitions()))
    seeds: tuple[int, ...] = (0,)
    sources: dict[str, list[Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in self.sources:
            _check_setting_name(key, "retrain.from", list(RunConfig.model_fields))
        for key in self.settings:
            if key in _JOB_SETTINGS:
                raise ConfigError(f"`{key}` cannot be set in `retrain.settings`: {_JOB_SETTINGS[key]}")
            allowed = [f for f in RetrainConfig.model_fields if f not in _JOB_SETTINGS and f != "updates"]
            _check_setting_name(key, "retrain.settings", [*allowed, *FINE_TUNING_FIELDS])
        for item in self.acquisition:
            try:
                check_acquisition_name(acquisition_setting(item)["acquisition"])
            except ConfigError as error:
                raise ConfigError(f"retrain.acquisition: {error}") from None
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ConfigError(f"retrain.seeds must be non-negative whole numbers, not {seed!r}")

    @classmethod
    def from_dict(cls, data: Any, source: str = "study spec") -> "RetrainSpec":
        """The section of a parsed ``retrain`` mapping; `source` names the spec in error messages."""
        _check_section(data, f"`retrain` of {source}", RETRAIN_KEYS, RETRAIN_KEYS, mappings=("from", "settings"))
        if not data.get("budgets"):
            raise ConfigError(
                f"`retrain` of {source} has no `budgets`: list counts or percentages of the candidate pool, "
                "e.g. `budgets: [1%, 2%, 5%]`"
            )
        budgets = data["budgets"].split(",") if isinstance(data["budgets"], str) else _as_list(data["budgets"])
        try:
            budgets = tuple(normalize_budget(item) for item in budgets)
        except ConfigError as error:
            raise ConfigError(f"retrain.budgets: {error}") from None
        sources = {key: _as_list(value) for key, value in (data.get("from") or {}).items()}
        optional = {key: tuple(_as_list(data[key])) for key in ("acquisition", "seeds") if data.get(key) is not None}
        if optional.get("acquisition") == ("all",):
            optional["acquisition"] = tuple(available_acquisitions())
        return cls(
            budgets=budgets,
            sources=sources,
            settings=dict(data.get("settings") or {}),
            **optional,
        )

    def to_dict(self) -> dict[str, Any]:
        """The section as the mapping `from_dict` reads."""
        return {
            "from": dict(self.sources),
            "acquisition": list(self.acquisition),
            "budgets": list(self.budgets),
            "seeds": list(self.seeds),
            "settings": dict(self.settings),
        }

    def jobs(self, runs: list[RunConfig]) -> list[RetrainJob]:
        """One validated job per matching source run x acquisition function x seed, in that order.

        Raises `ConfigError` when `from` matches none of `runs` or a setting is invalid.
        """
        sources = [run for run in runs if self._matches(run)]
        if not sources:
            seen = {key: sorted({repr(_setting(run, key)) for run in runs}) for key in self.sources}
            values = "; ".join(f"{key} is one of {', '.join(found)}" for key, found in seen.items())
            raise ConfigError(f"retrain.from matches none of the study's {len(runs)} runs (in the grid, {values})")
        jobs: dict[str, RetrainJob] = {}
        for run in sources:
            for item in self.acquisition:
                for seed in self.seeds:
                    try:
                        config = make_retrain_config(
                            **{**self.settings, **acquisition_setting(item, self.settings.get("acquisition_options"))},
                            checkpoint=f"{RUNS_DIR}/{run.run_id()}",
                            budgets=self.budgets,
                            seed=seed,
                        )
                    except RobustALError as error:
                        raise ConfigError(f"retraining ({item}, seed {seed}): {error}") from None
                    job = RetrainJob(run.run_id(), config)
                    jobs.setdefault(job.job_id, job)
        _check_acquisition_options(job.config for job in jobs.values())
        return list(jobs.values())

    def _matches(self, run: RunConfig) -> bool:
        return all(_setting(run, key) in values for key, values in self.sources.items())


def acquisition_setting(item: Any, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `acquisition` and `acquisition_options` settings of a spec's acquisition item: a name
    (with the shared `options`, if any) or a one-key mapping ``{name: {option: value}}``."""
    if isinstance(item, str):
        return {"acquisition": item, "acquisition_options": dict(options or {})}
    if isinstance(item, dict) and len(item) == 1:
        (name, own), = item.items()
        if isinstance(name, str) and isinstance(own or {}, dict):
            return {"acquisition": name, "acquisition_options": dict(own or {})}
    raise ConfigError(
        f"an acquisition function is a name or a mapping from a name to its options, "
        f"e.g. `dre` or `{{dre: {{quota: proportional}}}}`, not {item!r}"
    )


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _setting(run: RunConfig, key: str) -> Any:
    # the resolved architecture, so that `model: small_cnn` matches runs that left it to the dataset
    return run.model_name if key == "model" else getattr(run, key)


@dataclass(frozen=True)
class StudySpec:
    """A study: shared `settings` (with an optional ``preset``), a `grid` of value lists, and
    optionally a `retrain` section (retraining jobs from the grid's runs)."""

    grid: dict[str, list[Any]] | list[dict[str, list[Any]]]
    settings: dict[str, Any] = field(default_factory=dict)
    name: str = "study"
    retrain: RetrainSpec | None = None
    # AutoAttack on every run's final model as part of the run (robustal.experiments.evaluate):
    # {"attacks": "apgd-ce,apgd-t", "n": 1000}; None: not evaluated
    evaluate: dict[str, Any] | None = None

    @property
    def grids(self) -> list[dict[str, list[Any]]]:
        """The grid as a list of mappings (one when `grid` is a single mapping)."""
        return self.grid if isinstance(self.grid, list) else [self.grid]

    def __post_init__(self) -> None:
        fields = list(RunConfig.model_fields)
        if not self.grid:
            raise ConfigError("`grid` is empty: give the settings to combine, e.g. `grid: {acquisition: [random, dre]}`")
        for number, grid in enumerate(self.grids):
            where = "grid" if isinstance(self.grid, dict) else f"grid[{number}]"
            if not isinstance(grid, dict):
                raise ConfigError(f"{where} must be a mapping of setting names to value lists, not {grid!r}")
            for key, values in grid.items():
                _check_setting_name(key, where, fields)
                if not isinstance(values, list) or not values:
                    raise ConfigError(
                        f"{where}.{key} must be a non-empty list of values, e.g. `{key}: [a, b]`, not {values!r}; "
                        "put a single shared value under `settings` instead"
                    )
            for item in grid.get("acquisition", []):
                acquisition_setting(item)
            both = sorted(set(grid) & set(self.settings))
            if both:
                raise ConfigError(f"{', '.join(both)} is both in `{where}` and in `settings`: keep it in one of them")
        for key in self.settings:
            _check_setting_name(key, "settings", fields + [PRESET_KEY])
        if self.evaluate is not None:
            _check_evaluate(self.evaluate)
        if PRESET_KEY in self.settings and not isinstance(self.settings[PRESET_KEY], str):
            raise ConfigError(f"settings.preset must be a preset name, not {self.settings[PRESET_KEY]!r}")

    @classmethod
    def from_dict(cls, data: Any, source: str = "study spec") -> "StudySpec":
        """The spec of a parsed YAML mapping; `source` names it in error messages."""
        _check_section(data, source, BASE_KEYS, SPEC_KEYS, mappings=("settings",))
        if "grid" not in data:
            raise ConfigError(f"{source} has no `grid`: list the values to combine, e.g. `grid: {{acquisition: [random]}}`")
        name = str(data.get("name") or "study")
        retrain = RetrainSpec.from_dict(data["retrain"], source) if data.get("retrain") is not None else None
        grid = {} if data["grid"] is None else data["grid"]
        grid = [g if not isinstance(g, dict) else dict(g) for g in grid] if isinstance(grid, list) else grid
        if not isinstance(grid, (dict, list)):
            raise ConfigError(f"`grid` in {source} must be a mapping of setting names to value lists (or a list of them)")
        return cls(evaluate=data.get("evaluate"), grid=grid, settings=dict(data.get("settings") or {}), name=name, retrain=retrain)

    def to_dict(self) -> dict[str, Any]:
        """The spec as the mapping `from_dict` reads (what ``study.yaml`` stores)."""
        grid = [dict(g) for g in self.grid] if isinstance(self.grid, list) else dict(self.grid)
        spec = {"name": self.name, "settings": dict(self.settings), "grid": grid}
        if self.retrain is not None:
            spec["retrain"] = self.retrain.to_dict()
        if self.evaluate is not None:
            spec["evaluate"] = dict(self.evaluate)
        return spec

    def expand(self) -> list[RunConfig]:
        """One validated `RunConfig` per distinct run of the grid, in grid order.

        Invalid values raise `ConfigError` naming the grid combination they came from.
        """
        shared = {key: value for key, value in self.settings.items() if key != PRESET_KEY}
        configs: dict[str, RunConfig] = {}
        combinations = (
            dict(zip(grid, values)) for grid in self.grids for values in itertools.product(*grid.values())
        )
        for combination in combinations:
            try:
                settings = {**shared, **combination}
                if "acquisition" in combination:
                    options = combination.get("acquisition_options", shared.get("acquisition_options"))
                    settings.update(acquisition_setting(combination["acquisition"], options))
                config = make_config(**self._resolve(settings))
            except RobustALError as error:
                where = ", ".join(f"{key}={value}" for key, value in combination.items())
                raise ConfigError(f"run ({where}): {error}") from None
            configs.setdefault(config.run_id(), config)
        _check_acquisition_options(configs.values())
        return list(configs.values())

    def expand_retraining(self, runs: list[RunConfig] | None = None) -> list[RetrainJob]:
        """The retraining jobs of the ``retrain`` section (none without one) over `runs`
        (default: `expand()`), validated."""
        if self.retrain is None:
            return []
        return self.retrain.jobs(self.expand() if runs is None else runs)

    def _resolve(self, settings: dict[str, Any]) -> dict[str, Any]:
        preset = self.settings.get(PRESET_KEY)
        if preset is None:
            return settings
        from robustal.presets import apply_preset  # the presets layer sits beside the CLI

        return apply_preset(preset, settings.get("dataset", RunConfig.model_fields["dataset"].default), settings)


def _check_section(
    data: Any, where: str, shown: tuple[str, ...], valid: tuple[str, ...], mappings: tuple[str, ...] = ()
) -> None:
    """Raise `ConfigError` unless `data` is a mapping with only `valid` keys (`shown` are the
    keys named when it is no mapping) whose `mappings` keys, where given, are mappings."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(shown)}, not {type(data).__name__}")
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; valid keys: {', '.join(valid)}")
    for key in mappings:
        if not isinstance(data.get(key) or {}, dict):
            raise ConfigError(f"`{key}` in {where} must be a mapping of setting names to values")


def _check_evaluate(section: Any) -> None:
    from robustal.autoattack import parse_attacks

    _check_section(section, "`evaluate` of the study spec", EVALUATE_KEYS, EVALUATE_KEYS)
    try:
        parse_attacks(section.get("attacks"))
    except ConfigError as error:
        raise ConfigError(f"evaluate.attacks: {error}") from None
    n = section.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"evaluate.n must be a whole number of test images >= 1, not {n!r}")


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
    with decoding_errors(f"cannot read study spec {path}: {{reason}}; save it again as UTF-8 text"):
        text = path.read_text(encoding="utf-8")  # a damaged file is not always valid UTF-8
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    return StudySpec.from_dict(data, source=str(path))
