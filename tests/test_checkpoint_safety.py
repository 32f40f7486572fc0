"""Checkpoints are untrusted files: loading never runs code from them, damage is named and recovered."""

import os
from pathlib import Path

import pytest
import torch

from run_helpers import tiny_settings
from robustal.config import make_config
from robustal.errors import ConfigError, DataError
from robustal.loop import CHECKPOINT_FILE, load_checkpoint, run_active_learning

MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / "robustal-checkpoint-code-ran"


class Payload:
    """Unpickling this runs `os.system`-like code: writes MARKER."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("run")
    config = make_config(**tiny_settings(budget=60, epochs=1))
    result = run_active_learning(config, out, dataset=digits)
    return out, config, result


def _copy_run(out: Path, copy: Path) -> Path:
    copy.mkdir()
    for name in os.listdir(out):
        (copy / name).write_bytes((out / name).read_bytes())
    return copy


def _plant_malicious_checkpoint(out: Path, marker: Path) -> None:
    state = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    state["rounds_trained"] = Payload(marker)
    torch.save(state, out / CHECKPOINT_FILE)


def test_malicious_checkpoint_is_refused_by_load_checkpoint(finished_run, tmp_path):
    out, _, _ = finished_run
    copy = _copy_run(out, tmp_path / "run")
    marker = tmp_path / "ran"
    _plant_malicious_checkpoint(copy, marker)
    with pytest.raises(DataError, match=str(copy / CHECKPOINT_FILE)):
        load_checkpoint(copy)
    assert not marker.exists()


def test_malicious_checkpoint_never_runs_on_resume(finished_run, tmp_path, digits):
    out, config, result = finished_run
    copy = _copy_run(out, tmp_path / "run")
    marker = tmp_path / "ran"
    _plant_malicious_checkpoint(copy, marker)
    with pytest.warns(UserWarning, match="starting this run from scratch"):
        rerun = run_active_learning(config, copy, dataset=digits)
    assert not marker.exists()
    assert (copy / (CHECKPOINT_FILE + ".damaged")).exists()  # kept for inspection, not deleted
    # started over and computed the same seeded run again
    assert [r.robust_accuracy for r in rerun.records] == [r.robust_accuracy for r in result.records]
    assert load_checkpoint(copy)[2]["run_id"] == config.run_id()


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_damaged_checkpoint_restarts_the_run_and_says_so(finished_run, tmp_path, digits, damage):
    out, config, result = finished_run
    copy = tmp_path / "run"
    copy.mkdir()
    data = (out / CHECKPOINT_FILE).read_bytes()
    (copy / CHECKPOINT_FILE).write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read checkpoint"):
        load_checkpoint(copy / CHECKPOINT_FILE)
    with pytest.warns(UserWarning, match=str(copy / CHECKPOINT_FILE)):
        rerun = run_active_learning(config, copy, dataset=digits)
    assert [r.labeled for r in rerun.records] == [r.labeled for r in result.records]


def test_checkpoint_of_another_run_is_refused_before_use(finished_run, tmp_path, digits):
    out, config, _ = finished_run
    other = make_config(**tiny_settings(budget=60, epochs=1, seed=1))
    with pytest.raises(ConfigError, match="holds run"):
        run_active_learning(other, out, dataset=digits)


def test_rerunning_a_finished_run_repairs_a_damaged_rounds_file(finished_run, tmp_path, digits):
    import pandas as pd

    from robustal.loop import ROUNDS_FILE

    out, config, result = finished_run
    copy = _copy_run(out, tmp_path / "run")
    data = (copy / ROUNDS_FILE).read_bytes()
    (copy / ROUNDS_FILE).write_bytes(data[: len(data) // 2])
    run_active_learning(config, copy, dataset=digits)  # finished: nothing to train, the rounds are rewritten
    rounds = pd.read_parquet(copy / ROUNDS_FILE)
    assert rounds["robust_accuracy"].tolist() == [r.robust_accuracy for r in result.records]
