"""``robustal label``: init takes `robustal run`'s flags, status shows rounds, export/import,
train, and serve's message when the web extra is missing."""

from __future__ import annotations

import json
import sys

import pytest

from cli_helpers import invoke, run_robustal
from label_helpers import CLASSES, true_label
from robustal.errors import ConfigError
from robustal.label.project import LabelProject
from run_helpers import PROJECT, cli_flags


def test_init_as_a_user_runs_it(tmp_path, digits_folder):
    folder, _ = digits_folder
    done = run_robustal(
        "label", "init", tmp_path / "p", "--images", folder, "--classes", ",".join(CLASSES), "--validation", "10",
        *cli_flags(PROJECT), "--acquisition", "entropy", "--no-augment", timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "120 images, 10 classes" in done.stdout and f"\nnext: robustal label serve {tmp_path / 'p'}\n" in done.stdout
    config = LabelProject.open(tmp_path / "p").config
    assert (config.acquisition, config.per_round, config.epochs, config.augment, config.eps) == ("entropy", 10, 1, False, 0.1)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epoch", "3"], "No such option: --epoch (Possible options: --epochs, --eps)"),
        (["--out", "somewhere"], "No such option: --out"),  # a project's folder is PROJECT
        (["--dataset", "mnist"], "No such option: --dataset"),  # its images are its dataset
    ],
)
def test_flags_robustal_run_has_but_a_project_does_not_are_named(tmp_path, digits_folder, flags, message):
    folder, _ = digits_folder
    result = invoke("label", "init", tmp_path / "p", "--images", folder, "--classes", "a,b", *flags)
    assert result.exit_code == 2 and message in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / "p").exists()


def test_init_refuses_settings_that_do_not_fit(tmp_path, digits_folder):
    folder, _ = digits_folder
    result = invoke("label", "init", tmp_path / "p", "--images", folder, "--classes", "a,b", "--acquisition", "nope")
    assert isinstance(result.exception, ConfigError) and "unknown acquisition function 'nope'" in str(result.exception)
    assert not (tmp_path / "p").exists()


def test_a_preset_and_flags(tmp_path, digits_folder):
    folder, _ = digits_folder
    result = invoke(
        "label", "init", tmp_path / "p", "--images", folder, "--classes", ",".join(CLASSES), "--preset", "quick",
        "--validation", "5", "--initial", "10", "--image-size", "8",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = LabelProject.open(tmp_path / "p").config
    assert (config.model, config.train_steps, config.initial) == ("lenet5", 10, 10)  # MNIST's quick preset, --initial wins


def test_status_train_export_import(project, digits_folder, tmp_path):
    _, truth = digits_folder
    for _ in range(30):  # the validation set and the initial batch
        item = project.next_item("a")
        project.label(item.id, true_label(project, item.id, truth), "a")
    result = invoke("label", "train", project.path)
    assert result.exit_code == 0, result.output
    assert "round 0: 20 labels, validation accuracy" in result.output
    status = invoke("label", "status", project.path)
    assert "round 1; 30 labeled, 0 skipped, 40 asked; validation 10/10; this round 0/10" in " ".join(status.output.split())
    assert "rounds (accuracy on the labeled validation images)" in status.output

    exported = invoke("label", "export", project.path, "--format", "label-studio", "--out", tmp_path / "tasks.json")
    assert exported.exit_code == 0 and "wrote 120 tasks" in exported.output and "<Choices" in exported.output
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    open_task = next(task for task in tasks if "annotations" not in task)
    open_task["annotations"] = [{"result": [{"type": "choices", "value": {"choices": ["4"]}}]}]
    (tmp_path / "done.json").write_text(json.dumps(tasks))
    imported = invoke("label", "import", project.path, tmp_path / "done.json")
    assert "imported 1 labels (30 tasks already had that label" in imported.output
    assert project.item(open_task["data"]["robustal_item"]).label == 4
    csv = invoke("label", "export", project.path, "--format", "csv", "--out", tmp_path / "labels.csv")
    assert "wrote 31 labeled images" in csv.output


def test_serve_without_the_web_extra_says_how_to_install_it(project, monkeypatch):
    import robustal.label

    monkeypatch.setitem(sys.modules, "robustal.label.server", None)  # as if starlette were missing
    monkeypatch.delattr(robustal.label, "server", raising=False)  # imported by an earlier test
    result = invoke("label", "serve", project.path)
    assert isinstance(result.exception, ConfigError)
    assert "pip install 'robustal[label]'" in str(result.exception)


def test_serve_passes_its_options(project, monkeypatch):
    server = pytest.importorskip("robustal.label.server", reason="the extra robustal[label] is not installed")
    calls = []
    monkeypatch.setattr(server, "serve", lambda *args, **kwargs: calls.append((args, kwargs)))
    invoke("label", "serve", project.path, "--host", "0.0.0.0", "--port", "8123", "--token", "t" * 20)
    assert calls == [((project.path,), {"host": "0.0.0.0", "port": 8123, "token": "t" * 20})]
