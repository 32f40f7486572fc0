"""The study directory on disk, its status, and its results queried with DuckDB.

Layout (every file is written atomically: a temporary name, then a rename)::

    <study>/study.yaml              the spec of the latest `robustal study run`
    <study>/manifest.json           run id -> resolved settings of every run of the study
    <study>/runs/<run_id>/config.json      the run's full settings and library versions
    <study>/runs/<run_id>/rounds.parquet   one row per finished round: metrics, timings and
                                           the indices selected that round (``selected``)
    <study>/runs/<run_id>/checkpoint.pt    the latest round's state, to resume from
    <study>/runs/<run_id>/done.json        written when the run finished: final metrics
    <study>/runs/<run_id>/error.json       written when the run failed: the traceback

The first three run files are those of `robustal.loop.run_active_learning`. A run's state is
read from which files exist: ``done``, ``failed``, ``partial`` (rounds finished, then it was
interrupted, or it is running now) or ``pending``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from robustal.config import RunConfig
from robustal.errors import ConfigError
from robustal.loop import CHECKPOINT_FILE, ROUNDS_FILE, RunResult, atomic_write, versions

STUDY_FILE = "study.yaml"
MANIFEST_FILE = "manifest.json"
RUNS_DIR = "runs"
DONE_FILE = "done.json"
ERROR_FILE = "error.json"

STATES = ("done", "failed", "partial", "pending")
VIEWS = ("rounds", "final", "summary")
RUN_COLUMNS = ("run_id", "dataset", "model", "acquisition", "training", "seed")


def run_directory(study_dir: str | os.PathLike, run_id: str) -> Path:
    """The directory of run `run_id` in the study at `study_dir`."""
    return Path(study_dir) / RUNS_DIR / run_id


def run_state(run_dir: Path) -> str:
    """``done``, ``failed``, ``partial`` or ``pending``, from the files in `run_dir`."""
    if (run_dir / DONE_FILE).exists():
        return "done"
    if (run_dir / ERROR_FILE).exists():
        return "failed"
    if (run_dir / CHECKPOINT_FILE).exists():
        return "partial"
    return "pending"


def rounds_completed(run_dir: Path) -> int:
    """How many rounds of the run are on disk (read from the Parquet footer only)."""
    import pyarrow.parquet as pq

    path = run_dir / ROUNDS_FILE
    return pq.read_metadata(path).num_rows if path.exists() else 0


def write_json(path: Path, payload: Any) -> None:
    """Write `payload` as indented JSON, atomically."""
    atomic_write(path, lambda temporary: temporary.write_text(json.dumps(payload, indent=2)))


def read_json(path: Path) -> Any:
    """The JSON value stored at `path`."""
    return json.loads(path.read_text())


def mark_done(run_dir: Path, result: RunResult) -> dict[str, Any]:
    """Record that the run of `result` finished (``done.json``); returns the summary written."""
    last = result.records[-1]
    summary = {
        "run_id": result.config.run_id(),
        "rounds": len(result.records),
        "labeled": last.labeled,
        "clean_accuracy": last.clean_accuracy,
        "robust_accuracy": last.robust_accuracy,
        "seconds": sum(r.train_seconds + r.select_seconds + r.eval_seconds for r in result.records),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
    }
    write_json(run_dir / DONE_FILE, summary)
    return summary


def mark_failed(run_dir: Path, error: str, details: str = "") -> None:
    """Record that the run failed (``error.json``): a one-line `error` and the traceback `details`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    failed_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(run_dir / ERROR_FILE, {"error": error, "traceback": details, "failed_at": failed_at})


def clear_failure(run_dir: Path) -> None:
    """Forget an earlier failure of the run (it is being run again)."""
    (run_dir / ERROR_FILE).unlink(missing_ok=True)


def write_study(study_dir: Path, spec_dict: dict[str, Any], configs: list[RunConfig]) -> None:
    """Write ``study.yaml`` and ``manifest.json``: the runs of `configs`, plus runs of earlier
    specs in the same directory that have results on disk (nothing computed is dropped)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / RUNS_DIR).mkdir(exist_ok=True)
    runs = {
        run_id: settings
        for run_id, settings in read_manifest(study_dir).items()
        if run_state(run_directory(study_dir, run_id)) != "pending"
    }
    runs.update({config.run_id(): config.identity() for config in configs})
    atomic_write(study_dir / STUDY_FILE, lambda p: p.write_text(yaml.safe_dump(spec_dict, sort_keys=False)))
    write_json(study_dir / MANIFEST_FILE, {"name": spec_dict.get("name"), "runs": runs})


def read_manifest(study_dir: Path) -> dict[str, dict[str, Any]]:
    """Run id -> resolved settings of every run in the study (empty when there is no manifest)."""
    path = Path(study_dir) / MANIFEST_FILE
    return read_json(path)["runs"] if path.exists() else {}


def _require_study(study_dir: Path) -> dict[str, dict[str, Any]]:
    manifest = read_manifest(study_dir)
    if not manifest:
        raise ConfigError(
            f"{study_dir} is not a study directory (no {MANIFEST_FILE}): pass the --out of `robustal study run`"
        )
    return manifest


def study_status(study_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per run: its settings, state, rounds done of total, final metrics or error."""
    study_dir = Path(study_dir)
    rows = []
    for run_id, settings in _require_study(study_dir).items():
        run_dir = run_directory(study_dir, run_id)
        state = run_state(run_dir)
        row = {column: settings.get(column) for column in RUN_COLUMNS[1:]}
        row.update(run_id=run_id, state=state, rounds_done=rounds_completed(run_dir))
        row["rounds_total"] = RunConfig.model_construct(**settings).rounds + 1
        if state == "done":
            summary = read_json(run_dir / DONE_FILE)
            row.update({key: summary[key] for key in ("clean_accuracy", "robust_accuracy", "seconds")})
        if state == "failed":
            row["error"] = read_json(run_dir / ERROR_FILE)["error"]
        rows.append(row)
    metrics = ["clean_accuracy", "robust_accuracy", "seconds", "error"]
    return pd.DataFrame(rows, columns=[*RUN_COLUMNS, "state", "rounds_done", "rounds_total", *metrics])


def _settings_table(study_dir: Path):
    import pyarrow as pa

    rows = []
    for run_id, settings in _require_study(study_dir).items():
        options = json.dumps(settings.get("acquisition_options", {}), sort_keys=True)
        state = run_state(run_directory(study_dir, run_id))
        rows.append({"run_id": run_id, "state": state, **settings, "acquisition_options": options})
    columns = dict.fromkeys(key for row in rows for key in row)  # runs may differ in the settings they store
    # arrow keeps each setting's type (integers with nulls stay integers)
    return pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows])


# Each view is a query over `rounds` (every round on disk joined with its run's settings and state).
_VIEW_QUERIES = {
    "rounds": "SELECT * FROM rounds ORDER BY dataset, model, training, acquisition, seed, run_id, round",
    "final": (
        "SELECT * FROM rounds WHERE state = 'done' QUALIFY round = max(round) OVER (PARTITION BY run_id) "
        "ORDER BY dataset, model, training, acquisition, seed, run_id"
    ),
    "summary": (
        "SELECT {groups}, count(*) AS runs, avg(labeled) AS labeled, "
        "avg(clean_accuracy) AS clean_accuracy_mean, stddev_samp(clean_accuracy) AS clean_accuracy_std, "
        "avg(robust_accuracy) AS robust_accuracy_mean, stddev_samp(robust_accuracy) AS robust_accuracy_std, "
        "avg(total_seconds) AS seconds_mean "
        "FROM (SELECT *, sum(train_seconds + select_seconds + eval_seconds) OVER (PARTITION BY run_id) AS total_seconds "
        "FROM rounds WHERE state = 'done' QUALIFY round = max(round) OVER (PARTITION BY run_id)) "
        "GROUP BY {groups} ORDER BY {groups}"
    ),
}


def study_results(study_dir: str | os.PathLike, view: str = "rounds", selections: bool = False) -> pd.DataFrame:
    """The study's results as a DataFrame, read from every run's Parquet file with DuckDB.

    `view`: ``rounds`` (every round of every run, finished or not, with the run's settings
    and ``state``), ``final`` (the last round of each finished run) or ``summary`` (finished
    runs grouped by every setting except the seed: number of runs, mean and standard
    deviation of the final accuracy and robustness). `selections` keeps the ``selected``
    column (indices labeled each round) in the ``rounds`` and ``final`` views.
    """
    import duckdb

    if view not in VIEWS:
        raise ConfigError(f"unknown results view {view!r}; valid views: {', '.join(VIEWS)}")
    study_dir = Path(study_dir)
    settings = _settings_table(study_dir)
    pattern = str(study_dir / RUNS_DIR / "*" / ROUNDS_FILE)
    if not any((study_dir / RUNS_DIR).glob(f"*/{ROUNDS_FILE}")):
        return pd.DataFrame()
    connection = duckdb.connect()
    try:
        connection.register("settings", settings)
        source = "read_parquet('{}', union_by_name=true)".format(pattern.replace("'", "''"))
        round_columns = [column[0] for column in connection.execute(f"SELECT * FROM {source} LIMIT 0").description]
        extra = [column for column in settings.column_names if column not in round_columns]
        dropped = "" if selections and view != "summary" else " EXCLUDE (selected)"
        connection.execute(
            f"CREATE VIEW rounds AS SELECT r.*{dropped}, {', '.join(f's.{c}' for c in extra)} "
            f"FROM {source} r LEFT JOIN settings s USING (run_id)"
        )
        groups = ", ".join(c for c in [*RUN_COLUMNS[1:], *extra] if c not in ("seed", "state"))
        return connection.execute(_VIEW_QUERIES[view].format(groups=groups)).df()
    finally:
        connection.close()
