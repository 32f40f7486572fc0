"""Running robustal's command line in tests, one way everywhere: in this process through typer's
CliRunner (`invoke`), through the entry point that turns errors into exit code 2 (`main_refuses`),
or as a user runs it, in a subprocess (`run_robustal`, `start_robustal`).

Every way runs on one thread (``OMP_NUM_THREADS=1``, torch threads 1): float sums, hence
metrics, depend on the thread count, and the tests run two at a time (``pytest -n 2``) on two
cores, so a command must give the same numbers under xdist as alone. A subprocess imports
robustal from the same source folder as this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import Result
from typer import Typer
from typer.testing import CliRunner

import robustal
from robustal.cli import app as robustal_app
from robustal.cli import main

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SOURCE = Path(robustal.__file__).resolve().parents[1]  # the folder that holds the robustal package


def invoke(*args, app: Typer = robustal_app, **kwargs) -> Result:
    """``robustal ARGS`` in this process: ``CliRunner().invoke(app, args)`` (each argument as a
    string) on one thread; `app`: another typer app (``robustal data``'s); `kwargs` go to
    `CliRunner.invoke` (``terminal_width``, ``input``, ...)."""
    torch.set_num_threads(1)
    try:
        return CliRunner().invoke(app, [str(arg) for arg in args], env=ONE_THREAD, **kwargs)
    finally:
        torch.set_num_threads(1)  # a command may set its own (evaluate --threads, a study's runs)


def main_refuses(monkeypatch, capsys, *args) -> tuple[str, str]:
    """Run ``robustal ARGS`` through `robustal.cli.main` in this process, assert that it exits
    with code 2 (a RobustALError, one line), and return its stdout and stderr with every run of
    whitespace made one space (rich wraps long lines)."""
    monkeypatch.setattr(sys, "argv", ["robustal", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    return " ".join(captured.out.split()), " ".join(captured.err.split())


def robustal_command(*args, python_options: tuple[str, ...] = ()) -> list[str]:
    """The command line ``python [python_options] -m robustal ARGS``."""
    return [sys.executable, *python_options, "-m", "robustal", *map(str, args)]


def one_thread_environment(**extra: str) -> dict[str, str]:
    """This process's environment for a subprocess: one thread, robustal from `SOURCE`, `extra`."""
    path = os.pathsep.join(filter(None, [str(SOURCE), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **ONE_THREAD, "PYTHONPATH": path, **extra}


def run_robustal(*args, timeout: float = 600, cwd=None, env: dict[str, str] | None = None, python_options=()):
    """``robustal ARGS`` as a user runs it, to its end: the `subprocess.CompletedProcess` with
    text stdout and stderr. `env`: variables added to the environment (e.g. ``COLUMNS``)."""
    return subprocess.run(
        robustal_command(*args, python_options=python_options), capture_output=True, text=True, timeout=timeout,
        cwd=cwd, env=one_thread_environment(**(env or {})),
    )  # fmt: skip


def start_robustal(*args, **popen_options) -> subprocess.Popen:
    """``robustal ARGS`` started as a subprocess (`popen_options` go to `subprocess.Popen`)."""
    return subprocess.Popen(robustal_command(*args), env=one_thread_environment(), **popen_options)
