"""The README's library snippets run as written (one after the other, as a reader would)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

import robustal.loop

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_library_snippets_run(monkeypatch, tmp_path):
    run_snippet, learner_snippet = [block for block in python_blocks() if "robustal.loop import" in block]
    runs = []

    def recorded_run(config, out_dir=None, **options):  # the run itself is tested elsewhere; it takes minutes
        runs.append((config, out_dir))
        return SimpleNamespace(table=lambda: pd.DataFrame(columns=["labeled", "clean_accuracy", "robust_accuracy"]))

    monkeypatch.setattr(robustal.loop, "run_active_learning", recorded_run)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(run_snippet, namespace)
    assert [(config.acquisition, out) for config, out in runs] == [("dre", "runs/digits-dre")]
    exec(learner_snippet, namespace)  # uses the first snippet's `config`, nothing else undefined
    learner = namespace["learner"]
    assert len(learner.labeled_indices) == 200 and len(set(learner.labeled_indices)) == 200
    assert (learner.labels[learner.labeled_indices] >= 0).all()
