"""A study's results as the report reads them: the rounds of its finished runs, every run's
state, settings and library versions, and how the runs group into panels and tables."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from robustal.errors import ConfigError
from robustal.experiments import run_directory, study_results, study_status
from robustal.experiments.store import STUDY_FILE, read_study_manifest
from robustal.rundir import CONFIG_FILE, read_config

FUNCTION = "function"  # column: the acquisition function and its options, e.g. "dre (bins=20)"
BASELINE = "random"  # the function every other is compared with
# settings that are rows, columns or lines of the report, never part of a panel's key
NOT_GROUPING = ("acquisition", "acquisition_options", "training", "seed")
REGIME_ORDER = ("standard", "pgd")


@dataclass(frozen=True)
class StudyResults:
    """What a report shows, read from a study directory (see `load_study_results`).

    ``rounds``: every round of every finished run, with the run's settings, the indices
    selected each round (``selected``) and a ``function`` column; ``status``: one row per run
    of the study, every state; ``settings``: run id -> resolved settings (the manifest);
    ``configs``: run id -> the run's ``config.json`` (its full config, including the data
    root, and the library versions it ran with); ``group_columns``: dataset,
    model and every other setting that differs between finished runs (one panel per value).
    """

    study_dir: Path
    name: str
    spec: dict[str, Any]
    rounds: pd.DataFrame
    status: pd.DataFrame
    settings: dict[str, dict[str, Any]]
    configs: dict[str, dict[str, Any]]
    group_columns: list[str]

    @property
    def finished_run_ids(self) -> list[str]:
        """Ids of the runs the report shows (finished ones), in the study's order."""
        finished = set(self.rounds["run_id"])
        return [run_id for run_id in self.status["run_id"] if run_id in finished]

    def groups(self, frame: pd.DataFrame | None = None) -> Iterator[tuple[str, pd.DataFrame]]:
        """(title, rows of `frame`, default: the rounds) of each panel: dataset / model plus any
        other setting that differs; nothing for an empty `frame`."""
        frame = self.rounds if frame is None else frame
        if frame.empty:
            return
        for key, rows in frame.groupby(self.group_columns, sort=True, dropna=False):
            yield group_title(dict(zip(self.group_columns, key))), rows


def group_title(values: dict[str, Any]) -> str:
    """``digits / small_cnn`` (dataset / model), then ``, setting=value`` for the other keys."""
    title = f"{values['dataset']} / {values['model']}"
    extra = ", ".join(f"{key}={values[key]}" for key in values if key not in ("dataset", "model"))
    return f"{title}, {extra}" if extra else title


def function_label(acquisition: str, options: str | dict | None) -> str:
    """The name of an acquisition function with its options: ``entropy``, ``dre (bins=20)``."""
    if isinstance(options, str):
        options = json.loads(options) if options else {}
    if not options:
        return acquisition
    return f"{acquisition} ({', '.join(f'{key}={value}' for key, value in sorted(options.items()))})"


def ordered_functions(names) -> list[str]:
    """`names` sorted, the baseline (``random``) first."""
    return sorted(set(names), key=lambda name: (not name.startswith(BASELINE), name))


def ordered_regimes(names) -> list[str]:
    """Training regimes: ``standard`` (standard AL) first, then ``pgd``, then the others sorted."""
    return sorted(set(names), key=lambda name: (REGIME_ORDER.index(name) if name in REGIME_ORDER else 2, name))


def regime_title(regime: str) -> str:
    """Standard AL for ``standard`` training, robust AL for every adversarial regime."""
    return "standard AL (standard training)" if regime == "standard" else f"robust AL ({regime} training)"


def load_study_results(study_dir: str | os.PathLike) -> StudyResults:
    """The results of the study at `study_dir` (the ``--out`` of ``robustal study run``).

    Raises `ConfigError` when `study_dir` is no study directory or no run has finished yet.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise ConfigError(f"{study_dir} does not exist: pass a study directory (the --out of `robustal study run`)")
    status = study_status(study_dir)  # raises ConfigError naming the directory when it is no study
    rounds = study_results(study_dir, "rounds", selections=True)
    if not rounds.empty:
        rounds = rounds[rounds["state"] == "done"].reset_index(drop=True)
    if rounds.empty:
        states = ", ".join(f"{count} {state}" for state, count in status["state"].value_counts().items())
        raise ConfigError(
            f"{study_dir} has no finished runs yet ({states}): see `robustal study status {study_dir}`"
        )
    rounds[FUNCTION] = [function_label(a, o) for a, o in zip(rounds["acquisition"], rounds["acquisition_options"])]
    spec_path = study_dir / STUDY_FILE
    spec = yaml.safe_load(spec_path.read_text()) if spec_path.exists() else {}
    manifest = read_study_manifest(study_dir)
    settings = manifest["runs"]
    configs = {}
    for run_id in rounds["run_id"].unique():
        run_dir = run_directory(study_dir, run_id)
        configs[run_id] = read_config(run_dir) if (run_dir / CONFIG_FILE).exists() else {}
    return StudyResults(
        study_dir=study_dir,
        name=str(manifest.get("name") or spec.get("name") or study_dir.name),
        spec=spec or {},
        rounds=rounds,
        status=status,
        settings=settings,
        configs=configs,
        group_columns=_group_columns(settings, list(rounds["run_id"].unique())),
    )


def varying_settings(settings: dict[str, dict[str, Any]], run_ids: list[str]) -> list[str]:
    """The setting names whose values differ between the runs `run_ids` (in first-seen order)."""
    names = dict.fromkeys(name for run_id in run_ids for name in settings[run_id])
    return [
        name for name in names
        if len({json.dumps(settings[run_id].get(name), sort_keys=True) for run_id in run_ids}) > 1
    ]  # fmt: skip


def _group_columns(settings: dict[str, dict[str, Any]], run_ids: list[str]) -> list[str]:
    extra = [name for name in varying_settings(settings, run_ids) if name not in (*NOT_GROUPING, "dataset", "model")]
    return ["dataset", "model", *extra]
