"""Exporting a project's labels (csv, npz, imagefolder, label-studio) and importing a Label Studio export.

Exports hold the *current* labels (each item's latest label not undone):

- ``csv``: ``path,label,class,role`` per labeled item (role: validation, initial, round, pool);
- ``npz``: ``images`` (uint8, N x C x H x W, as decoded for training), ``labels``, ``validation``
  (bool), ``items`` (ids), ``paths`` and ``classes``;
- ``imagefolder``: a copy of every labeled original file in ``OUT/<class>/`` (the decoded image
  as PNG where the original is gone or changed);
- ``label-studio``: one task per item, in robustal's asking order. ``data.image`` is the file's
  path (or, with ``image="data"``, the image inlined as a data URL), ``data.robustal_item`` and
  ``data.robustal_sha256`` identify it on import; ``predictions[0].score`` is the item's place in
  the asking order scaled to [0, 1) (lowest first, as Label Studio's uncertainty sampling serves
  tasks), 1 for items never asked; labeled items carry an annotation with their class.

`import_label_studio` reads a Label Studio JSON export (``choices`` of a single-choice control)
and appends a label event for every task whose class differs from the current label: nothing
already labeled is lost (the log keeps every earlier event). Every task is checked before
anything is written; unknown classes and images are rejected naming the task.
"""

from __future__ import annotations

import base64
import csv
import json
import mimetypes
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustal.errors import ConfigError, DataError, decoding_errors
from robustal.label.project import LabelProject
from robustal.label.store import append_event
from robustal.rundir import atomic_write

FORMATS = ("csv", "npz", "imagefolder", "label-studio")
IMAGE_SOURCES = ("path", "data")
CHOICES_NAME, IMAGE_NAME = "label", "image"  # the control and object names of `labeling_config`
MAX_IMPORT_BYTES = 1 << 30  # a Label Studio export of a million tasks is a few hundred MB
SHOWN_PROBLEMS = 10


@dataclass(frozen=True)
class Labeled:
    """One labeled item, as the exports write it."""

    id: int
    row: int
    path: str
    sha256: str
    label: int
    role: str


def labeled_items(project: LabelProject) -> list[Labeled]:
    """Every item with a current label, by id; role as `Item.role`."""
    rows = project.store.read(
        "SELECT i.id, i.row, i.path, i.sha256, i.label, COALESCE(q.role, 'pool') AS role FROM items i "
        "LEFT JOIN queue q ON q.item = i.id AND q.round = (SELECT MAX(round) FROM queue WHERE item = i.id) "
        "WHERE i.label IS NOT NULL ORDER BY i.id"
    )
    return [Labeled(**dict(row)) for row in rows]


def check_output(out: Path) -> None:
    """`ConfigError` when `out` exists (an export never overwrites) or its folder does not."""
    if out.exists():
        raise ConfigError(f"{out} exists; choose another --out (exports never overwrite a file)")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent} is not a folder; create it or choose another --out")


def export(project: LabelProject, fmt: str, out: Path, image: str = "path") -> int:
    """Write `project`'s labels to `out` in format `fmt` (see the module doc); the number of
    labeled items written (label-studio: of tasks)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    if image not in IMAGE_SOURCES:
        raise ConfigError(f"unknown image source {image!r}; valid choices: {', '.join(IMAGE_SOURCES)}")
    out = Path(out)
    check_output(out)
    writers = {"csv": export_csv, "npz": export_npz, "imagefolder": export_imagefolder}
    if fmt == "label-studio":
        return export_label_studio(project, out, image)
    return writers[fmt](project, out)


def export_csv(project: LabelProject, out: Path) -> int:
    items = labeled_items(project)

    def write(path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "class", "role"])
            writer.writerows([item.path, item.label, project.classes[item.label], item.role] for item in items)

    atomic_write(out, write)
    return len(items)


def export_npz(project: LabelProject, out: Path) -> int:
    items = labeled_items(project)
    rows = np.array([item.row for item in items], dtype=np.int64)
    arrays = {
        "images": np.asarray(project.images[rows]),
        "labels": np.array([item.label for item in items], dtype=np.int64),
        "validation": np.array([item.role == "validation" for item in items], dtype=bool),
        "items": np.array([item.id for item in items], dtype=np.int64),
        "paths": np.array([item.path for item in items], dtype=str),
        "classes": np.array(project.classes, dtype=str),
    }

    def write(path: Path) -> None:
        with path.open("wb") as handle:  # a file object: np.savez would append .npz to the temporary name
            np.savez_compressed(handle, **arrays)

    atomic_write(out, write)
    return len(items)


def export_imagefolder(project: LabelProject, out: Path) -> int:
    """Copies in ``out/<class>/`` (built in a temporary folder, renamed when complete); a name
    taken in its class folder gets the item id appended."""
    items = labeled_items(project)
    building = out.with_name(f".{out.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        for name in project.classes:
            (building / name).mkdir(parents=True)
        for item in items:
            original = project.original_image(item.id)
            source = Path(item.path)
            name = source.name if original is not None else f"{source.stem}.png"
            target = building / project.classes[item.label] / name
            if target.exists():
                target = target.with_name(f"{target.stem}-{item.id}{target.suffix}")
            target.write_bytes(original if original is not None else project.image_png(item.id))
        os.replace(building, out)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return len(items)


def asking_order(project: LabelProject) -> list[int]:
    """Item ids in the order robustal asks them (validation, then each round's batch by rank,
    then overflow ranks), each once; items never asked are not listed."""
    rows = project.store.read(
        "SELECT q.item FROM queue q WHERE q.round = (SELECT MAX(round) FROM queue WHERE item = q.item) "
        "ORDER BY q.overflow, q.role != 'validation', q.round, q.rank"
    )
    return [row["item"] for row in rows]


def labeling_config(project: LabelProject) -> str:
    """The Label Studio labeling config (XML) matching the exported tasks."""
    choices = "\n".join(f'    <Choice value="{_xml(name)}"/>' for name in project.classes)
    return (
        f'<View>\n  <Image name="{IMAGE_NAME}" value="$image"/>\n'
        f'  <Choices name="{CHOICES_NAME}" toName="{IMAGE_NAME}" choice="single" showInline="true">\n{choices}\n  </Choices>\n</View>\n'
    )


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def _choice(project: LabelProject, label: int) -> dict:
    return {"from_name": CHOICES_NAME, "to_name": IMAGE_NAME, "type": "choices", "value": {"choices": [project.classes[label]]}}


def _image_source(project: LabelProject, item_id: int, path: str, image: str) -> str:
    if image == "path":
        return path
    data = project.original_image(item_id)
    media = mimetypes.guess_type(path)[0] if data is not None else "image/png"
    data = data if data is not None else project.image_png(item_id)
    return f"data:{media or 'application/octet-stream'};base64,{base64.b64encode(data).decode()}"


def export_label_studio(project: LabelProject, out: Path, image: str) -> int:
    order = asking_order(project)
    place = {item: position for position, item in enumerate(order)}
    rows = project.store.read(
        "SELECT i.id, i.path, i.sha256, i.label, COALESCE(q.role, 'pool') AS role, q.round, q.rank FROM items i "
        "LEFT JOIN queue q ON q.item = i.id AND q.round = (SELECT MAX(round) FROM queue WHERE item = i.id)"
    )
    rows = sorted(rows, key=lambda row: (place.get(row["id"], len(order)), row["id"]))
    tasks = []
    for row in rows:
        task = {
            "data": {
                "image": _image_source(project, row["id"], row["path"], image),
                "robustal_item": row["id"], "robustal_sha256": row["sha256"], "robustal_role": row["role"],
            },  # fmt: skip
            "predictions": [
                {
                    "model_version": "robustal asking order",
                    "score": place[row["id"]] / len(order) if row["id"] in place else 1.0,
                    "result": [],
                }
            ],
        }
        if row["label"] is not None:
            task["annotations"] = [{"result": [_choice(project, row["label"])], "was_cancelled": False}]
        tasks.append(task)
    atomic_write(out, lambda path: path.write_text(json.dumps(tasks, indent=1)))
    return len(tasks)


@dataclass(frozen=True)
class ImportResult:
    labeled: int  # label events appended (new or changed labels)
    unchanged: int  # tasks whose class already was the item's label
    without_annotation: int  # tasks with no annotation (or only cancelled ones): nothing to import


def _task_item(project: LabelProject, task: dict, number: int, by_path: dict[str, tuple[int, str]]) -> int:
    """The item of Label Studio task number `number`: by ``data.robustal_item`` (its sha256 must
    match), else by ``data.image`` equal to an item's path; `ValueError` naming the task."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise ValueError(f"task {number}: no data object")
    item = data.get("robustal_item")
    if item is not None:
        rows = project.store.read("SELECT sha256 FROM items WHERE id = ?", (item,)) if type(item) is int else []
        if not rows or ("robustal_sha256" in data and rows[0]["sha256"] != data["robustal_sha256"]):
            raise ValueError(f"task {number}: robustal_item {item!r} is not an image of this project (another project's export?)")
        return int(item)
    image = data.get("image")
    if isinstance(image, str) and image in by_path:
        return by_path[image][0]
    shown = image if not isinstance(image, str) or len(image) < 120 else image[:117] + "..."
    raise ValueError(f"task {number}: image {shown!r} is not an image of this project")


def _task_label(project: LabelProject, task: dict, number: int) -> tuple[int, str] | None:
    """(label, annotator) of the latest annotation of the task that was not cancelled; None when
    it has none; `ValueError` naming the task for anything but one known class."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise ValueError(f"task {number}: annotations is not a list")
    kept = [entry for entry in annotations if isinstance(entry, dict) and not entry.get("was_cancelled")]
    if not kept:
        return None
    annotation = kept[-1]
    choices = [
        choice
        for result in annotation.get("result") or []
        if isinstance(result, dict) and result.get("type") == "choices"
        for choice in (result.get("value") or {}).get("choices") or []
    ]
    if len(choices) != 1:
        raise ValueError(f"task {number}: {len(choices)} choices in its annotation; one class per image is imported")
    if choices[0] not in project.classes:
        raise ValueError(f"task {number}: class {choices[0]!r} is not a class of this project ({', '.join(project.classes)})")
    who = annotation.get("completed_by")
    who = who.get("email", who.get("id")) if isinstance(who, dict) else who
    return project.classes.index(choices[0]), f"label-studio:{who}"[:100] if who is not None else "label-studio"


def import_label_studio(project: LabelProject, file: Path) -> ImportResult:
    """Append the labels of Label Studio export `file` to `project` (see the module doc)."""
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: no such file; export the Label Studio project as JSON")
    if file.stat().st_size > MAX_IMPORT_BYTES:
        raise DataError(f"{file}: {file.stat().st_size} bytes, more than the {MAX_IMPORT_BYTES} a Label Studio export of this size needs")
    with decoding_errors(f"{file}: not a Label Studio JSON export ({{reason}}); export the project as JSON"):
        tasks = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(tasks, list):
        raise DataError(f"{file}: not a Label Studio JSON export (a list of tasks); export the project as JSON")
    by_path = {row["path"]: (row["id"], row["sha256"]) for row in project.store.read("SELECT id, path, sha256 FROM items")}
    wanted: dict[int, tuple[int, str]] = {}
    problems, empty = [], 0
    for number, task in enumerate(tasks, start=1):
        try:
            if not isinstance(task, dict):
                raise ValueError(f"task {number}: not an object")
            found = _task_label(project, task, number)
            if found is None:
                empty += 1
                continue
            wanted[_task_item(project, task, number, by_path)] = found
        except ValueError as problem:
            problems.append(str(problem))
    if problems:
        more = f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        raise DataError(f"{file}: nothing imported: " + "; ".join(problems[:SHOWN_PROBLEMS]) + more)
    changed = 0
    with project.store.write() as connection:
        for item, (label, annotator) in wanted.items():
            current = connection.execute("SELECT label FROM items WHERE id = ?", (item,)).fetchone()["label"]
            if current != label:
                append_event(connection, item, "label", annotator, f"import {file.name}", label)
                changed += 1
    return ImportResult(changed, len(wanted) - changed, empty)
