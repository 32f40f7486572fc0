"""The label store: acknowledged labels survive kill -9, concurrent annotators get different
items, the item summary always equals the event log, damaged files are named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from robustal.errors import DataError
from robustal.label.project import LabelProject
from robustal.label.store import STORE_FILE, Store, current_state

SRC = Path(__file__).resolve().parents[2] / "src"

# labels every item it is served, printing each id after label() returned (= acknowledged)
LABELER = textwrap.dedent(
    """
    import sys, time
    from robustal.label.project import LabelProject

    project = LabelProject.open(sys.argv[1])
    number = 0
    while (item := project.next_item("crash")) is not None:
        project.label(item.id, number % 10, "crash")
        print(item.id, number % 10, flush=True)
        number += 1
    time.sleep(60)
    """
)


def test_acknowledged_labels_survive_kill_9(project):
    process = subprocess.Popen(
        [sys.executable, "-c", LABELER, str(project.path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip
    acknowledged = {}
    try:
        while len(acknowledged) < 20:
            item_id, label = map(int, process.stdout.readline().split())
            acknowledged[item_id] = label
    finally:
        process.send_signal(signal.SIGKILL)  # in the middle of a transaction, or between two
        process.wait()
    reopened = LabelProject.open(project.path)
    assert reopened.store.read("PRAGMA integrity_check")[0][0] == "ok"
    assert {item_id: reopened.item(item_id).label for item_id in acknowledged} == acknowledged
    assert 20 <= reopened.progress().labeled <= 30  # and perhaps labels written after the last one read


def test_two_annotators_at_once_get_different_items(project):
    # two connections (as two server processes would have), asking at the same moment, many times
    other = LabelProject.open(project.path)
    served: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def annotate(labeling: LabelProject, annotator: str) -> None:
        start.wait()
        for _ in range(12):
            item = labeling.next_item(annotator)
            served[annotator].append(item.id)
            labeling.label(item.id, 0, annotator)

    threads = [threading.Thread(target=annotate, args=args) for args in ((project, "a"), (other, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(served["a"]) == len(served["b"]) == 12
    assert not set(served["a"]) & set(served["b"])
    assert project.progress().labeled == 24


def test_item_columns_always_equal_the_event_log(project):
    items = [project.next_item(name) for name in ("a", "b", "c")]
    project.label(items[0].id, 1, "a")
    project.label(items[0].id, 2, "b")
    project.skip(items[1].id, "b")
    project.label(items[2].id, 5, "c")
    project.undo("b")  # the skip
    project.undo("b")  # b's relabel: a's label 1 is current again
    project.label(items[1].id, 7, "a")
    with project.store.snapshot() as connection:
        for row in connection.execute("SELECT id, label, skipped FROM items").fetchall():
            state = current_state(connection, row["id"])
            expected = (None, 0) if state is None else (state["label"] if state["kind"] == "label" else None, int(state["kind"] == "skip"))
            assert (row["label"], row["skipped"]) == expected
    assert [project.item(item.id).label for item in items] == [1, 7, 5]


def test_a_damaged_store_is_named(tmp_path):
    path = tmp_path / STORE_FILE
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DataError, match=f"{path}: not a readable label store"):
        Store(path)
    with pytest.raises(DataError, match="no label store"):
        Store(tmp_path / "missing.sqlite")
