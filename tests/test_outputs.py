"""Output paths that cannot be written (a file, a path below a file, a folder without write
permission) are one clear line naming the path, before any compute, in every command."""

import os
from pathlib import Path

import pytest

from cli_helpers import main_refuses
from study_helpers import tiny_spec, write_spec
from robustal.outputs import check_output_file, prepare_output_dir


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permissions: /sys refuses it)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--out", "{file}"], "--out {file}: {file} is a file, not a folder"),
        (["run", "--out", "{file}/run"], "--out {file}/run: {file} is a file, not a folder"),
        (["run", "--out", "{unwritable}/run"], "--out {unwritable}/run: cannot write there"),
        (["demo", "--out", "{file}"], "--out {file}: {file} is a file, not a folder"),
        (["study", "run", "{spec}", "--out", "{file}"], "--out {file}: {file} is a file, not a folder"),
        (["study", "run", "{spec}", "--out", "{file}/study"], "--out {file}/study: {file} is a file, not a folder"),
        (["study", "run", "{spec}", "--out", "{unwritable}/study"], "--out {unwritable}/study: cannot write there"),
        (["report", "{folder}", "-o", "{file}"], "--out {file}: {file} is a file, not a folder"),
        (["report", "{folder}", "-o", "{unwritable}/report"], "--out {unwritable}/report: cannot write there"),
        (["study", "results", "{folder}", "--format", "csv", "--output", "{file}/r.csv"], "--output {file}/r.csv: {file} is a file"),
        (["study", "results", "{folder}", "--format", "csv", "--output", "{folder}"], "--output {folder}: it is a folder, not a file"),
        (["study", "results", "{folder}", "--format", "parquet", "--output", "{unwritable}/r.parquet"], "cannot write there"),
        (["retrain", "--checkpoint", "{folder}", "--budgets", "5", "--out", "{file}"], "--out {file}: {file} is a file, not a folder"),
    ],
)  # fmt: skip
def test_unwritable_outputs_are_one_clear_line_before_any_compute(tmp_path, monkeypatch, capsys, args, message):
    names = {
        "file": tmp_path / "a-file",
        "folder": tmp_path,
        "unwritable": unwritable_folder(tmp_path),
        "spec": write_spec(tmp_path / "spec.yaml", tiny_spec()),
    }
    names["file"].write_text("not a folder")
    _, error = main_refuses(monkeypatch, capsys, *(arg.format(**names) for arg in args))
    assert message.format(**names) in error
    assert names["file"].read_text() == "not a folder"


def test_output_folders_and_their_parents_are_created(tmp_path):
    assert prepare_output_dir(tmp_path / "a" / "b").is_dir()
    assert check_output_file(tmp_path / "c" / "r.csv") == tmp_path / "c" / "r.csv"
    assert (tmp_path / "c").is_dir() and not any((tmp_path / "c").iterdir())  # the write test leaves nothing
