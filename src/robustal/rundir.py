"""The directory of one job, and the shape every job has.

A job is an active-learning run (`robustal.loop.ActiveLearningJob`) or a retraining job
(`robustal.retraining.RetrainingJob`): settings with a stable id, a number of steps (rounds,
budgets), and a directory it writes and resumes from. Its directory holds, every file written
atomically (a temporary name, then a rename)::

    config.json        kind, id, the full settings and the library versions (`write_config`)
    <records>.parquet  one row per finished step: ``rounds.parquet`` of a run,
                       ``results.parquet`` of a retraining job (`RecordFile`)
    checkpoint.pt      a run's latest state, to resume from (`robustal.loop.read_checkpoint`)
    checkpoint-round-NN.pt   a run's kept round checkpoints (``keep_round_checkpoints``)
    autoattack-*.json  evaluations of the run's models (`robustal evaluate`)
    done.json          written when the job finished: its summary (`mark_done`)
    error.json         written when the job failed: the error and traceback (`mark_failed`)

A job's state is read from which files exist (`job_state`). Everything that knows these names
lives here: the loop, retraining, studies and reports read and write run directories only
through this module.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from robustal.errors import DataError

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
DONE_FILE = "done.json"
ERROR_FILE = "error.json"
EVALUATION_PREFIX = "autoattack-"  # evaluations of `robustal evaluate`: autoattack-<attacks>-n<N>[-roundNN].json
STATES = ("done", "failed", "partial", "pending", "damaged")


EARLIER_PREFIX = "earlier-"  # evaluations of a model that a run starting over replaced: kept, not read


def set_aside_evaluations(job_dir: Path) -> list[Path]:
    """Rename the AutoAttack evaluations in `job_dir` to ``earlier-...`` (a number added where
    that name is taken): the run starts over from its first round, so they attacked a model that
    its new computation replaces (on another CPU or version it differs). Returns the new paths."""
    moved = []
    for path in sorted(job_dir.glob(f"{EVALUATION_PREFIX}*.json")):
        target, number = path.with_name(EARLIER_PREFIX + path.name), 1
        while target.exists():
            target, number = path.with_name(f"{EARLIER_PREFIX}{number}-{path.name}"), number + 1
        path.rename(target)
        moved.append(target)
    return moved


def round_checkpoint_name(round_number: int) -> str:
    """The file name of round `round_number`'s checkpoint, kept with ``keep_round_checkpoints``."""
    return f"checkpoint-round-{round_number:02d}.pt"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` by `write(temporary)` then a rename, so readers never see a partial file.

    The temporary name is unique (process id and a random token), so that two writers of the
    same path never write into each other's temporary file; it is removed if `write` fails.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: Path, payload: Any) -> None:
    """Write `payload` as indented JSON, atomically."""
    atomic_write(path, lambda temporary: temporary.write_text(json.dumps(payload, indent=2)))


def read_json(path: Path) -> Any:
    """The JSON value stored at `path`."""
    return json.loads(path.read_text())


def versions() -> dict[str, str]:
    """Versions of robustal and the libraries that determine numbers."""
    import numpy as np
    import torch

    from robustal import __version__

    return {"robustal": __version__, "torch": torch.__version__, "numpy": np.__version__}


def write_config(job_dir: Path, kind: str, job_id: str, config: Any, **extra: Any) -> None:
    """Write ``config.json``: the job's `kind`, id, full settings (a pydantic model), `extra`
    entries (a retraining job's source run) and the library versions."""
    payload = {"kind": kind, "run_id": job_id, **extra, "config": config.model_dump(), "versions": versions()}
    write_json(job_dir / CONFIG_FILE, payload)


def read_config(job_dir: Path) -> dict[str, Any]:
    """The payload of the job's ``config.json``; a `DataError` naming the file when it is missing or damaged."""
    path = Path(job_dir) / CONFIG_FILE
    try:
        payload = read_json(path)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read the run settings {path}: {error}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict):
        raise DataError(f"{path} holds no run settings: it was not written by robustal")
    return payload


R = TypeVar("R")


@dataclass(frozen=True)
class RecordFile(Generic[R]):
    """The Parquet file of a job's finished steps: one row per record (a dataclass of type
    `record_type`), each row led by the job's identity columns (run id, dataset, ...)."""

    name: str
    record_type: type[R]

    def frame(self, identity: dict[str, Any], records: list[R]):
        """The records as a pandas DataFrame, each row led by the `identity` columns."""
        import pandas as pd

        return pd.DataFrame([{**identity, **asdict(record)} for record in records])

    def write(self, job_dir: Path, identity: dict[str, Any], records: list[R]) -> None:
        """Write every record (the file always holds all finished steps), atomically."""
        frame = self.frame(identity, records)
        atomic_write(job_dir / self.name, lambda temporary: frame.to_parquet(temporary, index=False))

    def read(self, job_dir: Path) -> list[R]:
        """The records on disk (none without a file); a `DataError` when the file is damaged."""
        import pandas as pd

        path = job_dir / self.name
        if not path.exists():
            return []
        names = [field.name for field in fields(self.record_type)]
        try:
            rows = pd.read_parquet(path)[names].to_dict("records")
        except Exception as error:  # any decoding failure of a damaged file
            raise DataError(f"cannot read {path}: {_reason(error, path)}") from None
        return [self.record_type(**_plain(row)) for row in rows]

    def count(self, job_dir: Path) -> int:
        """How many steps are on disk, from the file's footer (0 without a readable file)."""
        import pyarrow.parquet as pq

        path = job_dir / self.name
        try:
            return pq.read_metadata(path).num_rows if path.exists() else 0
        except Exception:  # damaged (see `job_state`): nothing readable on disk
            return 0

    def set_aside(self, job_dir: Path, reason: str) -> Path:
        """Move a damaged file to ``<name>.damaged`` (kept for inspection) with a warning; returns the new path."""
        kept = job_dir / (self.name + ".damaged")
        os.replace(job_dir / self.name, kept)
        warnings.warn(f"{reason}; moved it to {kept}", DamagedFileWarning, stacklevel=2)
        return kept


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    # Parquet gives lists back as numpy arrays: records hold plain lists of ints
    return {key: [int(v) for v in value] if hasattr(value, "tolist") and getattr(value, "ndim", 0) == 1 else value
            for key, value in row.items()}  # fmt: skip


class DamagedFileWarning(UserWarning):
    """A job's Parquet file cannot be read: its rows are left out (or computed again)."""


class Job(Protocol):
    """What every job is: settings with a stable id, steps, and a `run` that writes its directory.

    `run(job_dir, root)` computes the steps not yet in `job_dir` (resuming), writes
    ``config.json`` and the record file, and returns the summary that ``done.json`` will hold;
    `root` is the directory relative paths in the settings are read from (a study's). The
    experiments layer runs, schedules and stores jobs through this protocol only.
    """

    kind: ClassVar[str]  # "run" | "retrain"
    records: ClassVar[RecordFile]  # where its steps are stored
    config: Any  # its settings (a pydantic model)

    @property
    def job_id(self) -> str:
        """The stable id of the settings: the same job always gets the same id."""

    @property
    def steps(self) -> int:
        """Rounds of a run, budgets of a retraining job."""

    def is_done(self, job_dir: Path) -> bool:
        """Whether ``done.json`` in `job_dir` covers every step these settings ask for."""

    def run(self, job_dir: Path, root: Path | None = None) -> dict[str, Any]:
        """Compute the missing steps into `job_dir`; the summary for ``done.json``."""

    def rebuild_records(self, job_dir: Path) -> bool:
        """Rewrite a damaged record file from other state in `job_dir` (a run's checkpoint);
        False when that is not possible and the steps have to be computed again."""


def parquet_damage(path: Path, decode: bool = False) -> str | None:
    """Why the Parquet file at `path` cannot be read, or None (also when there is no file).
    Checks its footer (cheap), with `decode` every page too."""
    import pyarrow.parquet as pq

    if not path.exists():
        return None
    try:
        pq.read_table(path) if decode else pq.read_metadata(path)
    except Exception as error:  # any decoding failure of a damaged file
        return _reason(error, path)
    return None


def _reason(error: Exception, path: Path | None = None) -> str:
    text = str(error).strip().replace(f"Could not open Parquet input source '{path}': ", "")
    return text.splitlines()[0] if text else type(error).__name__


ROUNDS_FILE = "rounds.parquet"  # a run's record file (`robustal.loop.ROUNDS`)
RESULTS_FILE = "results.parquet"  # a retraining job's record file (`robustal.retraining.RESULTS`)
RECORD_FILES = (ROUNDS_FILE, RESULTS_FILE)


def find_damage(job_dir: Path, decode: bool = False) -> tuple[Path, str] | None:
    """(path, reason) of the damaged record file of the job in `job_dir` (see `parquet_damage`), or None."""
    for name in RECORD_FILES:
        reason = parquet_damage(job_dir / name, decode)
        if reason is not None:
            return job_dir / name, reason
    return None


def job_state(job_dir: Path, job: Job | None = None) -> str:
    """``done``, ``failed``, ``partial`` (steps finished, then interrupted, or running now),
    ``pending`` or ``damaged`` (its record file cannot be read), from the files in `job_dir`.
    With `job`, a job that finished without some steps it now asks for (new budgets) is ``partial``."""
    if find_damage(job_dir) is not None:
        return "damaged"
    if (job_dir / DONE_FILE).exists():
        return "done" if job is None or job.is_done(job_dir) else "partial"
    if (job_dir / ERROR_FILE).exists():
        return "failed"
    # what a job resumes from: a run's checkpoint (its rounds.parquet alone cannot resume it), a
    # retraining job's finished budgets
    if (job_dir / CHECKPOINT_FILE).exists() or (job_dir / RESULTS_FILE).exists():
        return "partial"
    return "pending"


def mark_done(job_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Record that a job finished (``done.json``): its `summary` with the time and library
    versions; returns what was written."""
    summary = {**summary, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions()}
    write_json(job_dir / DONE_FILE, summary)
    return summary


def mark_failed(job_dir: Path, error: str, details: str = "") -> None:
    """Record that the job failed (``error.json``): a one-line `error` and the traceback `details`."""
    job_dir.mkdir(parents=True, exist_ok=True)
    failed_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(job_dir / ERROR_FILE, {"error": error, "traceback": details, "failed_at": failed_at})


def clear_outcome(job_dir: Path) -> None:
    """Forget how an earlier attempt ended (it is being run again): its failure, or the
    completion of a retraining job whose spec has new budgets."""
    (job_dir / ERROR_FILE).unlink(missing_ok=True)
    (job_dir / DONE_FILE).unlink(missing_ok=True)


def repair_damaged(job_dir: Path, job: Job) -> str | None:
    """Repair `job`'s directory if its record file is damaged (every page is decoded); returns
    what was found and done, None when nothing was damaged.

    The damaged file is kept beside as ``<name>.damaged``. A run's rounds are rebuilt from its
    checkpoint, which holds every finished round (`Job.rebuild_records`); otherwise the job is
    no longer done, so that it is computed again.
    """
    found = find_damage(job_dir, decode=True)
    if found is None:
        return None
    path, reason = found
    kept = path.with_name(path.name + ".damaged")
    os.replace(path, kept)
    if job.rebuild_records(job_dir):
        return f"{path} was damaged ({reason}): rebuilt it from {CHECKPOINT_FILE} (the damaged file is {kept.name})"
    (job_dir / DONE_FILE).unlink(missing_ok=True)
    return f"{path} was damaged ({reason}): moved it to {kept.name}; computing it again"


ID_KEYS = ("run_id", "source_run_id")  # where a job's files name their own id and their source run's


def rename_job(job_dir: Path, target: Path, ids: dict[str, str]) -> None:
    """Move the job in `job_dir` to `target` and rewrite the ids its files hold (``run_id``,
    ``source_run_id`` in its JSON files, record files and checkpoints) by the mapping `ids`
    (old id -> new id): how a study adopts jobs written under an earlier version's ids.
    Checkpoints load safely (``weights_only``); every file is rewritten atomically."""
    import pandas as pd
    import torch

    def renamed(values: dict) -> dict:
        return {key: ids.get(value, value) if key in ID_KEYS else value for key, value in values.items()}

    for path in job_dir.glob("*.json"):
        value = read_json(path)
        if isinstance(value, dict):
            write_json(path, renamed(value))
    for name in RECORD_FILES:
        if (path := job_dir / name).exists():
            frame = pd.read_parquet(path)
            for key in set(ID_KEYS) & set(frame.columns):
                frame[key] = frame[key].map(lambda value: ids.get(value, value))
            atomic_write(path, lambda temporary: frame.to_parquet(temporary, index=False))
    for path in job_dir.glob("checkpoint*.pt"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        atomic_write(path, lambda temporary: torch.save(renamed(state), temporary))
    os.replace(job_dir, target)
