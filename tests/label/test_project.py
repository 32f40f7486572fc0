"""LabelProject: init (asking order, left-out files, labeled folders, refusals), labels, skips,
undo, relabel, history, leases, progress, images by id."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from label_helpers import CLASSES, true_label, write_digits
from run_helpers import PROJECT
from PIL import Image

from robustal.errors import ConfigError, DataError
from robustal.label.project import LabelProject


def ask_all(project: LabelProject, annotator: str = "a") -> list:
    """Every item `annotator` is served, skipping each (so the next one comes)."""
    served = []
    while (item := project.next_item(annotator)) is not None:
        served.append(item)
        project.skip(item.id, annotator)
    return served


def test_init_asks_the_validation_set_then_the_initial_batch(project):
    served = ask_all(project)
    # then 10 more random ones (per_round: the overflow ranks, served while round 0 trains)
    assert [item.role for item in served] == ["validation"] * 10 + ["initial"] * 30
    assert [item.rank for item in served] == list(range(40))
    assert all(item.round == 0 and item.score is None for item in served)
    assert len({item.id for item in served}) == 40
    overflow = project.store.read("SELECT rank FROM queue WHERE overflow = 1 ORDER BY rank")
    assert [row["rank"] for row in overflow] == list(range(30, 40))
    progress = project.progress()
    assert (progress.asked, progress.validation_total, progress.round_size, progress.round_done) == (40, 10, 30, 30)
    assert (progress.labeled, progress.skipped) == (0, 40)


def test_overflow_can_be_chosen(tmp_path, digits_folder):
    folder, _ = digits_folder
    project = LabelProject.init(tmp_path / "p", folder, CLASSES, None, dict(PROJECT), validation=10, overflow=0)
    assert len(ask_all(project)) == 30 and project.meta["overflow"] == 0
    with pytest.raises(ConfigError, match="overflow must be an integer"):
        LabelProject.init(tmp_path / "q", folder, CLASSES, None, dict(PROJECT), validation=10, overflow=-1)


def test_the_asking_order_is_seeded(tmp_path, digits_folder):
    folder, _ = digits_folder

    def order(name: str, seed: int) -> list[str]:
        project = LabelProject.init(tmp_path / name, folder, CLASSES, None, dict(PROJECT, seed=seed), validation=10)
        return [Path(item.path).name for item in ask_all(project)]

    first = order("first", 0)
    assert first == order("again", 0)
    assert first != order("other", 1)


def test_init_refuses_an_existing_project_and_leaves_nothing_when_it_fails(tmp_path, digits_folder):
    folder, _ = digits_folder
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=f"{existing} already exists"):
        LabelProject.init(existing, folder, CLASSES, None, dict(PROJECT), validation=10)
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]
    with pytest.raises(ConfigError, match="ask 121 images but 120 are unlabeled"):
        LabelProject.init(tmp_path / "new", folder, CLASSES, None, dict(PROJECT, initial=111, budget=200), validation=10)
    with pytest.raises(ConfigError, match="invalid run settings: epochs"):
        LabelProject.init(tmp_path / "new", folder, CLASSES, None, dict(PROJECT, epochs=0), validation=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "taken"]  # no project, no half-built folder
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is fine
    assert LabelProject.init(empty, folder, CLASSES, None, dict(PROJECT), validation=10).progress().round_size == 30


def test_open_refuses_a_folder_that_is_not_a_project(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path} is not a labeling project"):
        LabelProject.open(tmp_path)
    (tmp_path / "project.json").write_text("{not json")
    with pytest.raises(DataError, match="project.json: damaged project settings"):
        LabelProject.open(tmp_path)


def test_unreadable_files_are_skipped_and_duplicates_kept_once(tmp_path, digits_folder):
    folder, truth = digits_folder
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "copy.png").write_bytes((folder / "digit-0003.png").read_bytes())
    project = LabelProject.init(tmp_path / "p", folder, CLASSES, None, dict(PROJECT), validation=10)
    left_out = project.left_out()
    assert [entry["path"] for entry in left_out["unreadable"]] == [str((folder / "broken.png").resolve())]
    (duplicate,) = left_out["duplicates"]
    assert duplicate["path"] == str((folder / "digit-0003.png").resolve())  # sorted names: copy.png came first
    assert project.item(duplicate["item"]).path == str((folder / "copy.png").resolve())
    assert project.images.shape[0] == len(truth)  # 120 distinct images, the broken one not among them


def test_a_labeled_folder_gives_classes_and_labels(tmp_path, digits_folder):
    folder, _ = digits_folder
    labeled_truth = write_digits(tmp_path / "labeled", 30, start=500, class_folders=True)
    project = LabelProject.init(tmp_path / "p", folder, None, tmp_path / "labeled", dict(PROJECT), validation=10)
    assert project.classes == CLASSES  # from the subfolders, numerically sorted
    given = project.history(limit=100)
    assert {Path(item.path): item.label for item in given} == labeled_truth
    assert all(item.role == "pool" and item.rank == -1 for item in given)  # labeled without being asked
    assert project.progress().labeled == 30
    with pytest.raises(ConfigError, match=r"class folder\(s\) 7, 8, 9 are not among --classes"):
        LabelProject.init(tmp_path / "q", folder, CLASSES[:7], tmp_path / "labeled", dict(PROJECT), validation=10)


def test_init_needs_images_and_classes(tmp_path, digits_folder):
    folder, _ = digits_folder
    with pytest.raises(ConfigError, match="--images DIR"):
        LabelProject.init(tmp_path / "p", None, CLASSES, None, dict(PROJECT))
    with pytest.raises(ConfigError, match="--classes a,b,c"):
        LabelProject.init(tmp_path / "p", folder, None, None, dict(PROJECT))
    with pytest.raises(ConfigError, match="class.*0 given twice"):
        LabelProject.init(tmp_path / "p", folder, ["0", "1", "0"], None, dict(PROJECT))
    with pytest.raises(ConfigError, match="class names cannot contain /"):
        LabelProject.init(tmp_path / "p", folder, ["cat", "../dog"], None, dict(PROJECT))
    with pytest.raises(DataError, match="no such folder"):
        LabelProject.init(tmp_path / "p", tmp_path / "nowhere", CLASSES, None, dict(PROJECT))
    with pytest.raises(ConfigError, match="leave out --dataset"):
        LabelProject.init(tmp_path / "p", folder, CLASSES, None, dict(PROJECT, dataset="mnist"))


def test_label_relabel_undo(project, digits_folder):
    _, truth = digits_folder
    item = project.next_item("ann")
    answer = true_label(project, item.id, truth)
    project.label(item.id, answer, "ann")
    assert project.item(item.id).label == answer
    project.label(item.id, (answer + 1) % 10, "ann")  # relabel
    assert project.item(item.id).label == (answer + 1) % 10
    assert project.undo("ann").label == answer  # undoing the relabel brings the first label back
    assert project.undo("ann").label is None
    assert project.undo("ann") is None  # nothing left to undo
    assert project.next_item("ann").id == item.id  # the undone item is asked again
    events = project.store.read("SELECT kind FROM events ORDER BY id")
    assert [row["kind"] for row in events] == ["label", "label", "undo", "undo"]  # the log only grows


def test_skip_and_undo_of_a_skip(project):
    first = project.next_item("a")
    project.skip(first.id, "a")
    assert project.item(first.id).skipped
    second = project.next_item("a")
    assert second.id != first.id
    project.label(second.id, 3, "a")
    assert project.undo("a").id == second.id  # the latest first
    assert project.undo("a").id == first.id
    assert not project.item(first.id).skipped


def test_labels_and_ids_are_checked(project):
    item = project.next_item("a")
    for bad in (-1, 10, 2.0, True, "3"):
        with pytest.raises(ConfigError, match="is not a class"):
            project.label(item.id, bad, "a")
    for bad_id in (0, 10_000):
        with pytest.raises(ConfigError, match=f"unknown item id {bad_id}"):
            project.label(bad_id, 1, "a")
        with pytest.raises(ConfigError, match="unknown item id"):
            project.image_png(bad_id)
    with pytest.raises(ConfigError, match="item ids are integers"):
        project.item("../etc/passwd")
    with pytest.raises(ConfigError, match="annotator"):
        project.label(item.id, 1, "")
    assert project.store.read("SELECT COUNT(*) AS n FROM events")[0]["n"] == 0


def test_history_is_per_annotator_and_most_recent_first(project):
    a1 = project.next_item("a")
    project.label(a1.id, 1, "a")
    b1 = project.next_item("b")
    project.label(b1.id, 2, "b")
    a2 = project.next_item("a")
    project.skip(a2.id, "a")
    assert [item.id for item in project.history("a")] == [a2.id, a1.id]
    assert [item.id for item in project.history()] == [a2.id, b1.id, a1.id]
    project.label(b1.id, 4, "a")  # a relabels b's item: it moves to the top of a's history
    assert [(item.id, item.label) for item in project.history("a", limit=1)] == [(b1.id, 4)]


def test_leases_serve_different_items_and_expire(project):
    first = project.next_item("a", lease_seconds=0.2)
    second = project.next_item("b")
    assert first.id != second.id
    assert project.next_item("a", lease_seconds=0.2).id == first.id  # a's open lease: the same item again (a reload)
    time.sleep(0.25)
    assert project.next_item("c").id == first.id  # a's lease expired: served to c
    with pytest.raises(ConfigError, match="lease_seconds"):
        project.next_item("a", lease_seconds=0)


def test_image_png_is_the_decoded_image(project, digits_folder):
    item = project.next_item("a")
    png = Image.open(io.BytesIO(project.image_png(item.id)))
    original = Image.open(item.path)
    assert png.size == (8, 8)
    assert np.array_equal(np.asarray(png), np.asarray(original))  # 8x8 grayscale: decoded as it is
    assert project.original_image(item.id) == Path(item.path).read_bytes()
    Path(item.path).write_bytes(b"changed")
    assert project.original_image(item.id) is None  # a changed file is not shown as this item


def test_project_json_holds_the_settings(project):
    meta = json.loads((project.path / "project.json").read_text())
    assert meta["classes"] == CLASSES and meta["image_size"] == 8 and meta["channels"] == 1
    assert meta["settings"]["per_round"] == 10 and meta["settings"]["dataset"] == f"label:{meta['id']}"
    assert LabelProject.open(project.path).config == project.config


def test_presets_follow_the_images_channels(tmp_path, digits_folder):
    folder, _ = digits_folder
    project = LabelProject.init(
        tmp_path / "p", folder, CLASSES, None, {"preset": "quick", "initial": 20, "image_size": 8}, validation=10
    )
    assert project.config.model == "lenet5" and project.config.eps == 0.3  # MNIST's quick protocol for grayscale
    assert project.config.image_size == 8 and project.config.initial == 20  # flags win over the preset
