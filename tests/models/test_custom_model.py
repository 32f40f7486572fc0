"""--model MODULE:FUNCTION: a model of the user's own, from a module on the path."""

from __future__ import annotations

import textwrap
import uuid

import pytest
import torch
from run_helpers import tiny_settings

from robustal.config import make_config
from robustal.errors import ConfigError
from robustal.loop import load_checkpoint, run_active_learning
from robustal.models import Classifier, build_model

SEQUENTIAL = """
from torch import nn

def build(in_channels, num_classes, image_size):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * image_size * image_size, 32), nn.ReLU(), nn.Linear(32, num_classes)
    )
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """`write(source)`: a module with `source` in a folder on sys.path; its (unique) name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"my_models_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


def test_a_sequential_becomes_a_classifier_and_runs(user_module, digits, tmp_path):
    name = f"{user_module(SEQUENTIAL)}:build"
    model = build_model(name, 1, 10, 8)
    assert isinstance(model, Classifier) and model.head.out_features == 10 and model.embedding_size == 32
    assert model.embed(torch.zeros(3, 1, 8, 8)).shape == (3, 32)
    config = make_config(**tiny_settings(model=name, budget=30))
    assert config.identity()["model"] == name  # the spec is part of the run's id
    assert config.run_id() != make_config(**tiny_settings(budget=30)).run_id()
    run_active_learning(config, tmp_path / "run", dataset=digits)
    rebuilt, _, _ = load_checkpoint(tmp_path / "run")
    assert rebuilt.spec["name"] == name and isinstance(rebuilt.head, torch.nn.Linear)


def test_a_classifier_is_used_as_it_is(user_module):
    name = user_module(
        """
        from torch import nn
        from robustal.models import Classifier

        def build(in_channels, num_classes, image_size):
            return Classifier(nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, 16)), nn.Linear(16, num_classes))
        """
    )
    assert build_model(f"{name}:build", 3, 4, 6).embedding_size == 16


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("from torch import nn\ndef build(c, k, s):\n    return nn.Sequential(nn.Flatten(), nn.Linear(c * s * s, 3))\n",
         "has 3 outputs but the dataset has 10 classes"),
        ("from torch import nn\ndef build(c, k, s):\n    return nn.Conv2d(c, k, s)\n",
         "returned Conv2d; return a robustal.models.Classifier"),
        ("from torch import nn\ndef build(c, k, s):\n    return nn.Sequential(nn.Linear(5, k))\n",
         r"fails on a batch of images of shape \(2, 1, 8, 8\)"),
        ("def build(c, k):\n    return None\n", r"must take \(in_channels, num_classes, image_size\)"),
        ("from shutil import rmtree as build\n", "defines no function 'build'"),
        ("raise RuntimeError('oops')\n", "failed: RuntimeError: oops"),
    ],
)  # fmt: skip
def test_wrong_models_are_refused_with_the_reason(user_module, source, message):
    name = user_module(source)
    make_config(model=f"{name}:build")  # validation finds the module without running it
    with pytest.raises(ConfigError, match=message):
        build_model(f"{name}:build", 1, 10, 8)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not_a_module_anywhere:build", r"no module named 'not_a_module_anywhere'; put not_a_module_anywhere.py in a folder on PYTHONPATH"),
        ("os:chown", "os is a standard-library module"),
        ("my models:build", "write MODULE:FUNCTION"),
        ("pkg:", "write MODULE:FUNCTION"),
    ],
)  # fmt: skip
def test_names_are_checked_before_anything_is_imported(name, message):
    with pytest.raises(ConfigError, match=message):
        make_config(model=name)


def test_an_unknown_name_mentions_the_custom_form():
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'; valid choices: .*; or a model of your own as MODULE:FUNCTION"):
        make_config(model="resnet9000")
