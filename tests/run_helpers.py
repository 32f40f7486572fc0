"""The small settings of every test that trains, in one place: a run, a study's run, a labeling
project and a retraining job that each take seconds on one CPU thread.

A plain module with a unique name on ``sys.path`` (pyproject's pytest ``pythonpath``), not a
conftest: ``from conftest import ...`` finds whichever folder's conftest.py pytest imported last.
"""

from __future__ import annotations

# What keeps a job to seconds: one epoch, PGD of 2 steps at eps 0.1 (the 8x8 digits' scale).
QUICK = dict(epochs=1, eps=0.1, step_size=0.05, train_steps=2, eval_steps=2)

# A robust active-learning run on digits: 3 rounds of 30 labels, 2 epochs (the loop's tests).
TINY_RUN = dict(
    QUICK, dataset="digits", initial=30, per_round=30, budget=90, epochs=2, batch_size=30, eval_steps=3,
    validation_size=60, test_size=60,
)  # fmt: skip

# A run of a study: 3 rounds of 20 labels, one epoch, RunConfig's batch size (the study tests).
STUDY_RUN = dict(QUICK, dataset="digits", initial=20, per_round=20, budget=60, validation_size=50, test_size=50)

# A labeling project (no dataset: its images are its dataset): rounds of 10 labels up to 40.
PROJECT = dict(
    QUICK, model="small_cnn", image_size=8, initial=20, per_round=10, budget=40, batch_size=16, seed=0, device="cpu"
)  # fmt: skip

# The fine-tuning of a retraining job, scored on 60 test samples.
RETRAIN = dict(epochs=1, train_steps=2, eval_steps=2, validation_size=50, evaluation_size=60)


def tiny_settings(**overrides) -> dict:
    """RunConfig settings of a seconds-long robust AL run on digits (`TINY_RUN` with `overrides`)."""
    return {**TINY_RUN, **overrides}


def cli_flags(settings: dict) -> list[str]:
    """`settings` as command-line flags, as robustal.cli.settings names them: ``{"per_round": 30}``
    -> ``["--per-round", "30"]``; a true boolean is a bare ``--name``, a false one ``--no-name``."""
    flags = []
    for name, value in settings.items():
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            flags += [f"--{flag}", str(value)]
    return flags
