"""Exports (csv, npz, imagefolder, label-studio) hold the current labels; a Label Studio export
imports back as appended label events, and bad tasks are rejected naming them."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from label_helpers import true_label

from robustal.errors import ConfigError, DataError
from robustal.label.exchange import asking_order, export, import_label_studio, labeling_config


@pytest.fixture
def labeled(project, digits_folder):
    """The project with 12 items labeled (one relabeled, one label undone, one skip)."""
    _, truth = digits_folder
    for _ in range(12):
        item = project.next_item("a")
        project.label(item.id, true_label(project, item.id, truth), "a")
    first = project.history("a", limit=12)[-1]
    project.label(first.id, (first.label + 1) % 10, "a")  # relabeled: the export has the new label
    project.label(project.next_item("a").id, 4, "a")
    project.undo("a")  # undone: not exported
    project.skip(project.next_item("a").id, "a")
    return project


def current_labels(project) -> dict[str, int]:
    return {item.path: item.label for item in project.history(limit=1000) if item.label is not None}


def test_csv_lists_the_current_labels(labeled, tmp_path):
    assert export(labeled, "csv", tmp_path / "labels.csv") == 12
    with (tmp_path / "labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {row["path"]: int(row["label"]) for row in rows} == current_labels(labeled)
    assert all(row["class"] == labeled.classes[int(row["label"])] for row in rows)
    assert [row["role"] for row in rows].count("validation") == 10 and {row["role"] for row in rows} == {"validation", "initial"}


def test_npz_holds_the_decoded_images(labeled, tmp_path):
    export(labeled, "npz", tmp_path / "labels.npz")
    data = np.load(tmp_path / "labels.npz", allow_pickle=False)
    assert data["images"].dtype == np.uint8 and data["images"].shape == (12, 1, 8, 8)
    for image, label, item, path in zip(data["images"], data["labels"], data["items"], data["paths"]):
        assert np.array_equal(image, labeled.images[labeled._row(int(item))])
        assert labeled.item(int(item)).label == label and labeled.item(int(item)).path == path
    assert data["validation"].sum() == 10 and data["classes"].tolist() == labeled.classes


def test_imagefolder_copies_the_originals(labeled, tmp_path):
    changed = labeled.history("a", limit=1)[0]
    Path(changed.path).write_bytes(b"changed since init")  # gone from the project's view: the decoded image is written
    assert export(labeled, "imagefolder", tmp_path / "folder") == 12
    copies = sorted((tmp_path / "folder").rglob("*.png"))
    assert len(copies) == 12 and sorted(p.name for p in (tmp_path / "folder").iterdir()) == labeled.classes
    for item in labeled.history(limit=1000):
        if item.label is None:
            continue
        copy = tmp_path / "folder" / labeled.classes[item.label] / Path(item.path).name
        expected = labeled.image_png(item.id) if item.id == changed.id else Path(item.path).read_bytes()
        assert copy.read_bytes() == expected


def test_exports_never_overwrite(labeled, tmp_path):
    (tmp_path / "labels.csv").write_text("mine")
    for fmt in ("csv", "npz", "imagefolder", "label-studio"):
        with pytest.raises(ConfigError, match="labels.csv exists; choose another --out"):
            export(labeled, fmt, tmp_path / "labels.csv")
    assert (tmp_path / "labels.csv").read_text() == "mine"
    with pytest.raises(ConfigError, match="unknown export format 'xml'"):
        export(labeled, "xml", tmp_path / "out.xml")


def test_label_studio_tasks_follow_the_asking_order(labeled, tmp_path):
    assert export(labeled, "label-studio", tmp_path / "tasks.json") == 120
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    order = asking_order(labeled)
    assert [task["data"]["robustal_item"] for task in tasks[: len(order)]] == order
    scores = [task["predictions"][0]["score"] for task in tasks]
    assert scores == sorted(scores) and scores[0] == 0.0 and scores[-1] == 1.0  # lowest first = asked first
    annotated = {task["data"]["image"]: task["annotations"][0]["result"][0]["value"]["choices"][0] for task in tasks if "annotations" in task}
    assert annotated == {path: labeled.classes[label] for path, label in current_labels(labeled).items()}
    assert '<Choice value="9"/>' in labeling_config(labeled) and 'value="$image"' in labeling_config(labeled)


def test_label_studio_images_as_data_urls(labeled, tmp_path):
    export(labeled, "label-studio", tmp_path / "tasks.json", image="data")
    task = json.loads((tmp_path / "tasks.json").read_text())[0]
    header, encoded = task["data"]["image"].split(",", 1)
    assert header == "data:image/png;base64"
    assert base64.b64decode(encoded) == Path(labeled.item(task["data"]["robustal_item"]).path).read_bytes()


def test_a_label_studio_export_imports_back_without_losing_labels(labeled, tmp_path):
    export(labeled, "label-studio", tmp_path / "tasks.json")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    choice = lambda name: {"type": "choices", "from_name": "label", "to_name": "image", "value": {"choices": [name]}}  # noqa: E731
    unlabeled = [task for task in tasks if "annotations" not in task]
    unlabeled[0]["annotations"] = [{"result": [choice("7")], "completed_by": {"email": "ann@example.org"}}]
    unlabeled[1]["annotations"] = [{"result": [choice("3")], "completed_by": 5, "was_cancelled": True}]  # cancelled
    corrected = next(task for task in tasks if "annotations" in task)
    old_class = corrected["annotations"][0]["result"][0]["value"]["choices"][0]
    new_class = str((int(old_class) + 1) % 10)
    corrected["annotations"].append({"result": [choice(new_class)], "completed_by": 2})  # the latest annotation wins
    by_path = next(task for task in tasks[60:] if "annotations" not in task)
    by_path["data"] = {"image": by_path["data"]["image"]}  # a task Label Studio made from the path alone
    by_path["annotations"] = [{"result": [choice("1")]}]
    (tmp_path / "done.json").write_text(json.dumps(tasks))
    events_before = labeled.store.read("SELECT COUNT(*) AS n FROM events")[0]["n"]

    result = import_label_studio(labeled, tmp_path / "done.json")
    assert (result.labeled, result.unchanged, result.without_annotation) == (3, 11, 120 - 14)
    assert labeled.item(unlabeled[0]["data"]["robustal_item"]).label == 7
    assert labeled.item(unlabeled[1]["data"]["robustal_item"]).label is None
    assert labeled.item(corrected["data"]["robustal_item"]).label == int(new_class)
    assert labeled.item(by_path_item(labeled, by_path)).label == 1
    events = labeled.store.read("SELECT kind, annotator, source FROM events ORDER BY id")
    assert len(events) == events_before + 3  # appended; the earlier events stay in the log
    assert ("label", "label-studio:ann@example.org", "import done.json") in [tuple(row) for row in events]
    assert import_label_studio(labeled, tmp_path / "done.json").labeled == 0  # importing again changes nothing


def by_path_item(project, task) -> int:
    (row,) = project.store.read("SELECT id FROM items WHERE path = ?", (task["data"]["image"],))
    return row["id"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda task: task["annotations"][0]["result"][0]["value"].update(choices=["cat"]), r"task 1: class 'cat' is not a class of this project"),
        (lambda task: task["annotations"][0]["result"][0]["value"].update(choices=["1", "2"]), "task 1: 2 choices"),
        (lambda task: task["data"].update(robustal_sha256="0" * 64), "task 1: robustal_item .* is not an image of this project"),
        (lambda task: task.update(data={"image": "/elsewhere/cat.png"}), r"task 1: image '/elsewhere/cat.png' is not an image of this project"),
    ],
)  # fmt: skip
def test_bad_tasks_are_rejected_and_nothing_is_imported(labeled, tmp_path, change, message):
    export(labeled, "label-studio", tmp_path / "tasks.json")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    change(tasks[0])  # a validation item, labeled
    tasks[20]["annotations"] = [{"result": [{"type": "choices", "value": {"choices": ["5"]}}]}]
    (tmp_path / "bad.json").write_text(json.dumps(tasks))
    before = labeled.store.read("SELECT COUNT(*) AS n FROM events")[0]["n"]
    with pytest.raises(DataError, match=f"bad.json: nothing imported: {message}"):
        import_label_studio(labeled, tmp_path / "bad.json")
    assert labeled.store.read("SELECT COUNT(*) AS n FROM events")[0]["n"] == before


def test_files_that_are_not_exports_are_named(labeled, tmp_path):
    (tmp_path / "x.json").write_text("{broken")
    with pytest.raises(DataError, match="x.json: not a Label Studio JSON export"):
        import_label_studio(labeled, tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"tasks": []}')
    with pytest.raises(DataError, match="y.json: not a Label Studio JSON export"):
        import_label_studio(labeled, tmp_path / "y.json")
    with pytest.raises(DataError, match="no such file"):
        import_label_studio(labeled, tmp_path / "missing.json")
