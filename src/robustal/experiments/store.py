"""The study directory on disk, its status, and its results queried with DuckDB.

Layout::

    <study>/study.yaml              the spec of the latest `robustal study run`
    <study>/study.lock              held (flock) by the `robustal study run` that writes the study
    <study>/manifest.json           run id -> resolved settings of every run of the study, and
                                    retraining job id -> its settings, source run id and budgets
    <study>/runs/<run_id>/          a run's directory (`robustal.rundir`: config.json,
                                    rounds.parquet, checkpoint.pt, done.json, error.json, ...)
    <study>/retrain/<job_id>/       a retraining job's directory (config.json, results.parquet, ...)

Every file is written atomically (a temporary name, then a rename). A run's or job's state is
read from which files exist (`robustal.rundir.job_state`): ``done``, ``failed``, ``partial``,
``pending`` or ``damaged``; a damaged one is left out of the results, with a
`DamagedFileWarning`, until `robustal study run` repairs it (`robustal.rundir.repair_damaged`).
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from robustal.config import RunConfig
from robustal.errors import ConfigError, RobustALError
from robustal.loop import ROUNDS
from robustal.retraining import RESULTS, RetrainConfig, finished_budgets
from robustal.rundir import (
    CONFIG_FILE,
    DONE_FILE,
    ERROR_FILE,
    EVALUATION_PREFIX,
    STATES,
    DamagedFileWarning,
    _reason,
    atomic_write,
    find_damage,
    job_state,
    read_config,
    read_json,
    rename_job,
    write_json,
)

STUDY_FILE = "study.yaml"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = "study.lock"
RUNS_DIR = "runs"
RETRAIN_DIR = "retrain"
VIEWS = ("rounds", "final", "summary")
RUN_COLUMNS = ("run_id", "dataset", "model", "acquisition", "training", "seed")
# `training` is the source run's regime; accuracies are fractions; robust_gain = robust_after - robust_before
RETRAINING_COLUMNS = {
    "source_run_id": "object", "dataset": "object", "model": "object", "training": "object", "acquisition": "object",
    "acquisition_options": "object", "budget": "int64", "seed": "int64", "clean_before": "float64", "robust_before": "float64",
    "clean_after": "float64", "robust_after": "float64", "robust_gain": "float64",
}  # fmt: skip
RETRAINING_STATUS_COLUMNS = (
    "job_id", "source_run_id", "dataset", "model", "training", "acquisition", "seed", "state",
    "budgets_done", "budgets_total", "error",
)  # fmt: skip


def run_directory(study_dir: str | os.PathLike, run_id: str) -> Path:
    """The directory of run `run_id` in the study at `study_dir`."""
    return Path(study_dir) / RUNS_DIR / run_id


def retrain_directory(study_dir: str | os.PathLike, job_id: str) -> Path:
    """The directory of retraining job `job_id` in the study at `study_dir`."""
    return Path(study_dir) / RETRAIN_DIR / job_id


def damage_message(path: Path, reason: str) -> str:
    """What a damaged results file means to the user, and how to recover: run the study again."""
    study_dir = path.parent.parent.parent
    return (
        f"{path} is damaged ({reason}) and left out: run `robustal study run {study_dir / STUDY_FILE} "
        f"--out {study_dir}` again to recompute it"
    )


def rounds_completed(run_dir: Path) -> int:
    """How many rounds of the run are on disk."""
    return ROUNDS.count(run_dir)


def budgets_completed(job_dir: Path) -> int:
    """How many budgets of the retraining job are on disk."""
    return RESULTS.count(job_dir)


def adopt_earlier_ids(
    study_dir: Path, runs: dict[str, RunConfig], retraining: dict[str, RetrainConfig]
) -> dict[str, str]:
    """Rename the runs and retraining jobs of this study that are stored under the ids of an
    earlier robustal version (0.1 put settings at their defaults into ids) to the current ids
    (`robustal.rundir.rename_job`), so that nothing computed is computed again. `runs` and
    `retraining` map the current ids to the study's settings. Returns new id -> what was done.
    A directory whose settings are not one of them, or cannot be read, is left alone."""
    renamed: dict[str, str] = {}  # old id -> new id
    messages = {}
    for directory, schema, expected in ((RUNS_DIR, RunConfig, runs), (RETRAIN_DIR, RetrainConfig, retraining)):
        for job_dir in sorted((study_dir / directory).glob("*")):
            if job_dir.name in expected or not (job_dir / CONFIG_FILE).is_file():
                continue
            try:
                settings = read_config(job_dir)["config"]
                if schema is RetrainConfig:  # its checkpoint is a run of the study: under that run's new id
                    source = Path(settings["checkpoint"])
                    settings = {**settings, "checkpoint": str(source.with_name(renamed.get(source.name, source.name)))}
                new_id = schema(**settings).run_id()
            except Exception:  # noqa: BLE001 - not settings of this version: left alone
                continue
            target = job_dir.with_name(new_id)
            if new_id in expected and not target.exists():
                renamed[job_dir.name] = new_id
                rename_job(job_dir, target, renamed)
                messages[new_id] = f"{job_dir} holds this study's run under an earlier version's id: renamed it to {target.name}"
    return messages


@contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    """Hold the lock of the study's one writer while the block runs: an exclusive ``flock`` on
    ``study.lock``, released when the block ends or the process dies. Another process holding it
    is a `RobustALError` naming it (pid, host, start time). Needs a file system with working
    ``flock`` (local disks; NFS only where its locks are enabled)."""
    import fcntl

    with open(Path(study_dir) / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RobustALError(
                f"another `robustal study run` is writing to {study_dir} ({_holder(handle.read())}): wait until "
                "it ends or stop it, then run again (one study directory has one writer)"
            ) from None
        handle.truncate(0)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        handle.write(json.dumps(holder))
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)  # nobody holds it (the lock itself ends with the file handle)


def _holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):  # the holder has not written itself yet
        return "a process that is starting"


def check_same_study(study_dir: Path, spec_dict: dict[str, Any], extend: bool = False) -> None:
    """Refuse to run the spec `spec_dict` into `study_dir` when the directory holds another
    study (its ``study.yaml`` differs, other than in the `evaluate` section), unless `extend`:
    one directory, one study. The same spec again resumes it."""
    path = Path(study_dir) / STUDY_FILE
    if extend or not path.exists():
        return
    try:
        stored = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        stored = _reason(error)
    if not isinstance(stored, dict):
        raise ConfigError(f"cannot read {path}, the spec of the study in {study_dir}: choose another --out") from None
    new = yaml.safe_load(yaml.safe_dump(spec_dict, sort_keys=False))  # as it would be stored
    # the `evaluate` section adds AutoAttack results to the same runs: not another study
    keys = [key for key in dict.fromkeys([*stored, *new]) if key != "evaluate"]
    differing = [key for key in keys if stored.get(key) != new.get(key)]
    if differing:
        raise ConfigError(
            f"{study_dir} holds the study {stored.get('name')!r} (spec: {path}) and this spec differs from it in "
            f"{', '.join(differing)}: choose another --out, or add --extend to add this spec's runs to that study"
        )


def retraining_entry(source_run_id: str, config: RetrainConfig) -> dict[str, Any]:
    """The manifest's record of a retraining job: its source run, settings and budgets."""
    return {"source_run_id": source_run_id, **config.resolved_settings(), "budgets": list(config.budgets)}


def write_study(
    study_dir: Path,
    spec_dict: dict[str, Any],
    configs: list[RunConfig],
    retraining: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Write ``study.yaml`` and ``manifest.json``: the runs of `configs` and the `retraining`
    jobs (job id -> `retraining_entry`), plus the runs and jobs of earlier specs in the same
    directory that have results on disk (nothing computed is dropped)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / RUNS_DIR).mkdir(exist_ok=True)
    manifest = read_study_manifest(study_dir)
    runs = _kept(manifest.get("runs", {}), lambda run_id: run_directory(study_dir, run_id))
    runs.update({config.run_id(): config.resolved_settings() for config in configs})
    jobs = _kept(manifest.get("retraining", {}), lambda job_id: retrain_directory(study_dir, job_id))
    jobs.update(retraining or {})
    atomic_write(study_dir / STUDY_FILE, lambda p: p.write_text(yaml.safe_dump(spec_dict, sort_keys=False)))
    write_json(study_dir / MANIFEST_FILE, {"name": spec_dict.get("name"), "runs": runs, "retraining": jobs})


def _kept(entries: dict[str, Any], directory) -> dict[str, Any]:
    return {key: value for key, value in entries.items() if job_state(directory(key)) != "pending"}


def read_study_manifest(study_dir: Path) -> dict[str, Any]:
    """The study's ``manifest.json``: its name, runs (id -> settings) and retraining jobs (empty without one)."""
    path = Path(study_dir) / MANIFEST_FILE
    return read_json(path) if path.exists() else {}


def read_manifest(study_dir: Path) -> dict[str, dict[str, Any]]:
    """Run id -> resolved settings of every run in the study (empty when there is no manifest)."""
    return read_study_manifest(study_dir).get("runs", {})


def read_retraining_manifest(study_dir: Path) -> dict[str, dict[str, Any]]:
    """Retraining job id -> `retraining_entry` of every retraining job in the study."""
    return read_study_manifest(study_dir).get("retraining", {})


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
        state = job_state(run_dir)
        row = {column: settings.get(column) for column in RUN_COLUMNS[1:]}
        row.update(run_id=run_id, state=state, rounds_done=rounds_completed(run_dir))
        row["rounds_total"] = RunConfig.model_construct(**settings).rounds + 1
        if state == "done":
            summary = read_json(run_dir / DONE_FILE)
            row.update({key: summary[key] for key in ("clean_accuracy", "robust_accuracy", "seconds")})
        row["error"] = _state_error(run_dir, state)
        rows.append(row)
    metrics = ["clean_accuracy", "robust_accuracy", "seconds", "error"]
    return pd.DataFrame(rows, columns=[*RUN_COLUMNS, "state", "rounds_done", "rounds_total", *metrics])


def _state_error(run_dir: Path, state: str) -> str | None:
    """The error of a failed run or job, what is wrong with a damaged one, else None."""
    if state == "failed":
        return read_json(run_dir / ERROR_FILE)["error"]
    if state == "damaged":
        return damage_message(*find_damage(run_dir))
    return None


def read_parquet_files(paths: list[Path]):
    """The rows of the Parquet files `paths` as one Arrow table (columns by name, as DuckDB's
    ``union_by_name``; None without readable files). A damaged file is left out with a
    `DamagedFileWarning` saying how to recover, so that one bad file never blocks a study."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in paths:
        try:
            tables.append(pq.read_table(path))
        except Exception as error:  # any decoding failure of a damaged file
            warnings.warn(damage_message(path, _reason(error, path)), DamagedFileWarning, stacklevel=3)
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def _settings_table(study_dir: Path):
    import pyarrow as pa

    rows = []
    for run_id, settings in _require_study(study_dir).items():
        options = json.dumps(settings.get("acquisition_options", {}), sort_keys=True)
        state = job_state(run_directory(study_dir, run_id))
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
        "count(autoattack_robust_accuracy) AS autoattack_runs, "
        "avg(autoattack_robust_accuracy) AS autoattack_robust_accuracy_mean, "
        "stddev_samp(autoattack_robust_accuracy) AS autoattack_robust_accuracy_std, "
        "avg(autoattack_pgd_robust_accuracy - autoattack_robust_accuracy) AS autoattack_gap_mean, "
        "avg(total_seconds) AS seconds_mean "
        "FROM (SELECT *, sum(train_seconds + select_seconds + eval_seconds) OVER (PARTITION BY run_id) AS total_seconds "
        "FROM rounds WHERE state = 'done' QUALIFY round = max(round) OVER (PARTITION BY run_id)) "
        "GROUP BY {groups} ORDER BY {groups}"
    ),
}


# columns of `robustal.experiments.evaluate.study_evaluations` shown as autoattack_<column>
EVALUATION_JOIN_COLUMNS = ("attacks", "samples", "robust_accuracy", "pgd_robust_accuracy")




def read_evaluations(run_dir: Path) -> pd.DataFrame:
    """Every AutoAttack evaluation stored in `run_dir`, one row each (no rows when none)."""
    rows = []
    for path in sorted(run_dir.glob(f"{EVALUATION_PREFIX}*.json")):
        try:
            evaluation = read_json(path)
        except Exception as error:
            raise RobustALError(f"cannot read the evaluation {path}: {error}; delete it and evaluate again") from None
        rows.append({**evaluation, "attacks": "+".join(evaluation["attacks"])})
    return pd.DataFrame(rows)


def study_evaluations(study_dir: str | os.PathLike) -> pd.DataFrame:
    """The most complete AutoAttack evaluation of every evaluated model of the study (each run's
    final model, and kept round checkpoints; most points, then most attacks): run id, labeled,
    attacks, samples, clean / AutoAttack / PGD robust accuracy."""
    study_dir = Path(study_dir)
    frames = [read_evaluations(run_directory(study_dir, run_id)) for run_id in read_manifest(study_dir)]
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame(columns=EVALUATION_COLUMNS)
    frame = pd.concat(frames, ignore_index=True)
    frame["attack_count"] = frame["attacks"].str.count(r"\+") + 1
    frame = frame.sort_values(["run_id", "labeled", "samples", "attack_count"]).groupby(["run_id", "labeled"]).tail(1)
    return frame[list(EVALUATION_COLUMNS)].reset_index(drop=True)


EVALUATION_COLUMNS = (
    "run_id", "labeled", "attacks", "samples", "clean_accuracy", "robust_accuracy", "pgd_robust_accuracy", "pgd_only_broken",
)  # fmt: skip


def _evaluations_table(study_dir: Path) -> pd.DataFrame:
    frame = study_evaluations(study_dir)
    return frame.astype({"labeled": "int64", "samples": "int64", "robust_accuracy": "float64", "pgd_robust_accuracy": "float64"})


def study_results(study_dir: str | os.PathLike, view: str = "rounds", selections: bool = False) -> pd.DataFrame:
    """The study's results as a DataFrame, read from every run's Parquet file with DuckDB.

    `view`: ``rounds`` (every round of every run, finished or not, with the run's settings
    and ``state``), ``final`` (the last round of each finished run) or ``summary`` (finished
    runs grouped by every setting except the seed: number of runs, mean and standard
    deviation of the final accuracy and robustness). Runs evaluated with `robustal evaluate`
    have ``autoattack_*`` columns in their last round (AutoAttack and PGD robust accuracy on the
    same points; the summary's ``autoattack_gap_mean`` is PGD minus AutoAttack). `selections` keeps the ``selected``
    column (indices labeled each round) in the ``rounds`` and ``final`` views. A run whose
    ``rounds.parquet`` is damaged is left out with a `DamagedFileWarning` (see `robustal.rundir.job_state`).
    """
    import duckdb

    if view not in VIEWS:
        raise ConfigError(f"unknown results view {view!r}; valid views: {', '.join(VIEWS)}")
    study_dir = Path(study_dir)
    settings = _settings_table(study_dir)
    files = read_parquet_files(sorted((study_dir / RUNS_DIR).glob(f"*/{ROUNDS.name}")))
    if files is None:
        return pd.DataFrame()
    connection = duckdb.connect()
    try:
        connection.register("settings", settings)
        connection.register("evaluations", _evaluations_table(study_dir))
        connection.register("files", files)
        round_columns = files.column_names
        extra = [column for column in settings.column_names if column not in round_columns]
        dropped = "" if selections and view != "summary" else " EXCLUDE (selected)"
        # AutoAttack evaluations (robustal evaluate) belong to the round whose model they attacked
        evaluated = ", ".join(f"e.{c} AS autoattack_{c}" for c in EVALUATION_JOIN_COLUMNS)
        connection.execute(
            f"CREATE VIEW rounds AS SELECT r.*{dropped}, {', '.join(f's.{c}' for c in extra)}, {evaluated} "
            "FROM files r LEFT JOIN settings s USING (run_id) "
            "LEFT JOIN evaluations e ON e.run_id = r.run_id AND e.labeled = r.labeled"
        )
        groups = ", ".join(c for c in [*RUN_COLUMNS[1:], *extra] if c not in ("seed", "state"))
        frame = connection.execute(_VIEW_QUERIES[view].format(groups=groups)).df()
    finally:
        connection.close()
    # a study that nobody evaluated with AutoAttack shows no AutoAttack columns
    evaluated = [c for c in frame.columns if c.startswith("autoattack_")]
    if evaluated and frame[[c for c in evaluated if c != "autoattack_runs"]].isna().all().all():
        frame = frame.drop(columns=evaluated)
    return frame


def retraining_status(study_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per retraining job: its source run (id, dataset, model, training regime),
    acquisition function, seed, state, budgets done of total, and the error of a failed job."""
    study_dir = Path(study_dir)
    runs = _require_study(study_dir)
    rows = []
    for job_id, entry in read_retraining_manifest(study_dir).items():
        job_dir = retrain_directory(study_dir, job_id)
        source = runs.get(entry["source_run_id"], {})
        row = {key: source.get(key) for key in ("dataset", "model", "training")}
        state = job_state(job_dir)
        if state == "done" and not set(entry["budgets"]) <= finished_budgets(job_dir):
            state = "partial"  # the latest spec added budgets
        done = budgets_completed(job_dir)
        row.update(
            job_id=job_id, source_run_id=entry["source_run_id"], acquisition=entry["acquisition"], seed=entry["seed"],
            state=state, budgets_done=done, budgets_total=done if state == "done" else len(set(entry["budgets"])),
        )  # fmt: skip
        row["error"] = _state_error(job_dir, state)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(RETRAINING_STATUS_COLUMNS))


def retraining_results(study_dir: str | os.PathLike) -> pd.DataFrame:
    """The retraining jobs' results: one row per source run, acquisition function, budget and seed.

    Columns (exactly): ``source_run_id, dataset, model, training, acquisition, acquisition_options,
    budget, seed, clean_before, robust_before, clean_after, robust_after, robust_gain``
    (``acquisition_options``: the job's options as JSON, e.g. ``{"quota": "paper"}``). ``training`` is the
    source run's regime (the fine-tuning regime is the job's ``training`` setting), ``budget``
    the number of labels added, ``seed`` the retraining seed; accuracies are fractions on the
    evaluation split and ``robust_gain = robust_after - robust_before``. Every budget on disk is
    a row, also those of jobs that were interrupted; an empty frame (same columns) when the
    study has no retraining results.
    """
    import duckdb
    import pyarrow as pa

    study_dir = Path(study_dir)
    runs = _require_study(study_dir)
    empty = pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in RETRAINING_COLUMNS.items()})
    files = read_parquet_files(sorted((study_dir / RETRAIN_DIR).glob(f"*/{RESULTS.name}")))
    if files is None:
        return empty
    sources = pa.Table.from_pylist(
        [{"run_id": run_id, "training": settings.get("training")} for run_id, settings in runs.items()],
        schema=pa.schema([("run_id", pa.string()), ("training", pa.string())]),
    )
    jobs = pa.Table.from_pylist(
        [
            {"job_id": job_id, "options": json.dumps(entry.get("acquisition_options") or {}, sort_keys=True)}
            for job_id, entry in read_retraining_manifest(study_dir).items()
        ],
        schema=pa.schema([("job_id", pa.string()), ("options", pa.string())]),
    )
    connection = duckdb.connect()
    try:
        connection.register("sources", sources)
        connection.register("jobs", jobs)
        connection.register("files", files)
        frame = connection.execute(
            "SELECT r.source_run_id, r.dataset, r.model, s.training, r.acquisition, "
            "coalesce(j.options, '{}') AS acquisition_options, r.budget, r.seed, "
            "r.clean_accuracy_before AS clean_before, r.robust_accuracy_before AS robust_before, "
            "r.clean_accuracy_after AS clean_after, r.robust_accuracy_after AS robust_after, r.robust_gain "
            "FROM files r LEFT JOIN sources s ON r.source_run_id = s.run_id LEFT JOIN jobs j ON r.run_id = j.job_id "
            "ORDER BY r.dataset, r.model, s.training, r.source_run_id, r.acquisition, r.seed, r.budget"
        ).df()
    finally:
        connection.close()
    return frame.astype(RETRAINING_COLUMNS)
