"""The label store: one SQLite file (``labels.sqlite``) holding a labeling project's state.

Tables:

- ``items``: every decoded image (row of the project's image array, original path, sha256,
  ``pool`` or ``validation``) with its *current* label or skip, derived from ``events`` in the
  same transaction as every event (the log is the truth, the columns are its summary).
- ``queue``: what was asked, per round: rank (0 = asked first), role (``validation``,
  ``initial``, ``round``), acquisition score, the function and the model (round) that ranked it,
  and ``overflow`` (ranks beyond the round's batch, served while the next round trains).
- ``events``: the append-only label log: ``label`` (with the class), ``skip`` and ``undo`` (of
  an earlier label or skip), with annotator, time and source (``web``, an import file, ...).
- ``leases``: which annotator is being shown which item, until when.
- ``rounds``: one row per finished training round (metrics, checkpoint file).
- ``trainer`` (at most one row: the running trainer's pid) and ``trainer_runs`` (every start,
  with its outcome), ``duplicates`` and ``unreadable`` (files left out at init).

The database runs in WAL mode with ``synchronous=FULL``: once a write transaction has committed,
it survives a kill -9 of the process and a power loss. Every write is one ``BEGIN IMMEDIATE``
transaction (`Store.write`), so concurrent processes (the server, the trainer, the CLI)
serialise their writes and never see half of one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from robustal.errors import DataError

STORE_FILE = "labels.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_SECONDS = 30.0  # how long a write waits for another process's transaction
ROLES = ("validation", "initial", "round")  # why a queue row asks its item
EVENT_KINDS = ("label", "skip", "undo")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    row INTEGER NOT NULL UNIQUE,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('pool', 'validation')),
    label INTEGER,
    skipped INTEGER NOT NULL DEFAULT 0,
    event INTEGER
);
CREATE TABLE queue (
    round INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    item INTEGER NOT NULL REFERENCES items(id),
    role TEXT NOT NULL CHECK (role IN ('validation', 'initial', 'round')),
    score REAL,
    acquisition TEXT NOT NULL,
    model_version INTEGER,
    overflow INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (round, rank),
    UNIQUE (round, item)
);
CREATE INDEX queue_item ON queue(item, round);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item INTEGER NOT NULL REFERENCES items(id),
    kind TEXT NOT NULL CHECK (kind IN ('label', 'skip', 'undo')),
    label INTEGER,
    undoes INTEGER REFERENCES events(id),
    annotator TEXT NOT NULL,
    time TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX events_item ON events(item, id);
CREATE INDEX events_annotator ON events(annotator, id);
CREATE UNIQUE INDEX events_undone ON events(undoes) WHERE undoes IS NOT NULL;
CREATE TABLE leases (
    item INTEGER PRIMARY KEY REFERENCES items(id),
    annotator TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE rounds (
    round INTEGER PRIMARY KEY,
    labeled INTEGER NOT NULL,
    validation_labeled INTEGER NOT NULL,
    clean_accuracy REAL NOT NULL,
    robust_accuracy REAL NOT NULL,
    best_epoch INTEGER NOT NULL,
    train_seconds REAL NOT NULL,
    checkpoint TEXT NOT NULL,
    last_event INTEGER NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE trainer (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER NOT NULL,
    run INTEGER NOT NULL
);
CREATE TABLE trainer_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pid INTEGER NOT NULL,
    round INTEGER NOT NULL,
    last_event INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    message TEXT
);
CREATE TABLE duplicates (path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, item INTEGER NOT NULL REFERENCES items(id));
CREATE TABLE unreadable (path TEXT PRIMARY KEY, reason TEXT NOT NULL);
"""


def now() -> str:
    """The current time as an ISO 8601 UTC string (milliseconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """A connection to a project's ``labels.sqlite``, shared by the threads of one process.

    `read` runs one query; `write` is a ``BEGIN IMMEDIATE`` transaction yielding the connection
    (committed when the block ends, rolled back when it raises). A lock serialises this
    process's threads on the one connection; SQLite's own locking serialises processes.
    """

    def __init__(self, path: Path, create: bool = False) -> None:
        self.path = path
        if not create and not path.is_file():
            raise DataError(f"{path}: no label store; the project is incomplete (run robustal label init again)")
        self._lock = threading.RLock()
        try:
            self.connection = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
            self.connection.row_factory = sqlite3.Row
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA synchronous=FULL")  # a committed label is on disk
            self.connection.execute("PRAGMA foreign_keys=ON")
            if create:
                with self.write() as connection:
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            connection.execute(statement)
                    connection.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            version = self.read("SELECT value FROM meta WHERE key = 'schema'")
        except sqlite3.DatabaseError as error:
            raise DataError(f"{path}: not a readable label store ({error}); restore it from a backup") from None
        if not version or version[0]["value"] != str(SCHEMA_VERSION):
            found = version[0]["value"] if version else "none"
            raise DataError(f"{path}: label store schema {found}, this robustal reads {SCHEMA_VERSION}")

    def read(self, sql: str, parameters: tuple | dict = ()) -> list[sqlite3.Row]:
        """The rows of one query (a consistent snapshot)."""
        with self._lock:
            return self.connection.execute(sql, parameters).fetchall()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: taken at once (``BEGIN IMMEDIATE``), committed at the end."""
        with self._lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same state of the database."""
        with self._lock:
            self.connection.execute("BEGIN")
            try:
                yield self.connection
            finally:
                self.connection.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self.connection.close()


def current_state(connection: sqlite3.Connection, item: int) -> sqlite3.Row | None:
    """The latest label or skip event of `item` that no undo took back; None when there is none."""
    return connection.execute(
        "SELECT id, kind, label FROM events WHERE item = ? AND kind != 'undo' "
        "AND id NOT IN (SELECT undoes FROM events WHERE item = ? AND undoes IS NOT NULL) ORDER BY id DESC LIMIT 1",
        (item, item),
    ).fetchone()


def refresh_item(connection: sqlite3.Connection, item: int) -> None:
    """Set `item`'s current label / skip columns from the event log."""
    state = current_state(connection, item)
    if state is None:
        connection.execute("UPDATE items SET label = NULL, skipped = 0, event = NULL WHERE id = ?", (item,))
    else:
        label = state["label"] if state["kind"] == "label" else None
        connection.execute(
            "UPDATE items SET label = ?, skipped = ?, event = ? WHERE id = ?",
            (label, int(state["kind"] == "skip"), state["id"], item),
        )


def append_event(
    connection: sqlite3.Connection,
    item: int,
    kind: str,
    annotator: str,
    source: str,
    label: int | None = None,
    undoes: int | None = None,
) -> int:
    """Append one event to the log, update the item's current state; the event's id."""
    cursor = connection.execute(
        "INSERT INTO events (item, kind, label, undoes, annotator, time, source) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (item, kind, label, undoes, annotator, now(), source),
    )
    refresh_item(connection, item)
    connection.execute("DELETE FROM leases WHERE item = ?", (item,))
    return int(cursor.lastrowid)


def last_event_id(connection: sqlite3.Connection) -> int:
    """The id of the latest event (0 when the log is empty): the log's position."""
    return int(connection.execute("SELECT MAX(id) FROM events").fetchone()[0] or 0)
