"""Helpers of the study tests: tiny study specs on digits (runs of `run_helpers.STUDY_RUN`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from run_helpers import STUDY_RUN


def tiny_spec(grid: dict | list[dict] | None = None, **settings) -> dict:
    """A study spec over STUDY_RUN (updated with `settings`, less what `grid` sweeps);
    default grid: random and entropy."""
    grid = grid or {"acquisition": ["random", "entropy"]}
    swept = {key for g in (grid if isinstance(grid, list) else [grid]) for key in g}
    shared = {key: value for key, value in {**STUDY_RUN, **settings}.items() if key not in swept}
    return {"name": "tiny", "settings": shared, "grid": grid}


def write_spec(path: Path, spec: dict) -> Path:
    """Write `spec` as YAML to `path`; returns `path`."""
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
