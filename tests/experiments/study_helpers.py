"""Helpers of the study tests: tiny study specs on digits (a module, not a conftest: the
subfolders each have a conftest.py, so shared helpers live in plain modules)."""

from __future__ import annotations

from pathlib import Path

import yaml

# Settings of a seconds-long run on digits (3 rounds of 20 labels).
TINY_SETTINGS = dict(
    dataset="digits", initial=20, per_round=20, budget=60, epochs=1, train_steps=2, eval_steps=2,
    eps=0.1, step_size=0.05, test_size=50, validation_size=50,
)  # fmt: skip


def tiny_spec(grid: dict | list[dict] | None = None, **settings) -> dict:
    """A study spec over TINY_SETTINGS (updated with `settings`, less what `grid` sweeps);
    default grid: random and entropy."""
    grid = grid or {"acquisition": ["random", "entropy"]}
    swept = {key for g in (grid if isinstance(grid, list) else [grid]) for key in g}
    shared = {key: value for key, value in {**TINY_SETTINGS, **settings}.items() if key not in swept}
    return {"name": "tiny", "settings": shared, "grid": grid}


def write_spec(path: Path, spec: dict) -> Path:
    """Write `spec` as YAML to `path`; returns `path`."""
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
