"""Command-line manners: a fast ``--help`` (no heavy library imported for it), defaults shown
in ``run --help``, a word on how to resume after Ctrl-C, and a resumed run says where it resumes."""

from __future__ import annotations

import click
import pytest

from cli_helpers import invoke, run_robustal
from robustal.cli import SUBCOMMANDS, load_subcommand
from robustal.config import RunConfig
from robustal.loop import ActiveLearner
from robustal.presets import PRESETS
from run_helpers import cli_flags, tiny_settings

HEAVY = {"torch", "matplotlib", "duckdb", "numba", "pandas"}  # seconds of imports together
# two rounds of 30 labels, one epoch, one PGD step
RUN_FLAGS = cli_flags(tiny_settings(budget=60, epochs=1, train_steps=1, eval_steps=1))


def test_help_imports_no_heavy_library():
    result = run_robustal("--help", python_options=("-X", "importtime"), timeout=120)
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in SUBCOMMANDS)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "typer" in imported  # the import log was read
    assert not imported & HEAVY


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_each_help_line_is_the_first_paragraph_of_the_command_help(name):
    command = load_subcommand(name)
    assert command.name == name
    assert " ".join(command.help.split("\n\n")[0].split()) == SUBCOMMANDS[name].summary


def help_records(command: click.Command) -> dict[str, str]:
    context = click.Context(command)
    return {param.name: param.get_help_record(context)[1] for param in command.params if param.name != "help"}


def test_run_help_shows_every_default_and_what_a_preset_or_the_dataset_decides():
    command = load_subcommand("run")
    records = help_records(command)
    on_off_flags = {p.name for p in command.params if p.is_flag and not p.secondary_opts and p.name != "help"}
    assert on_off_flags == {
        "retrain_from_scratch", "channels_last", "fold_batchnorm", "compile", "cuda_graphs", "fast", "keep_round_checkpoints",
    }  # fmt: skip
    assert all("[default: " in text for name, text in records.items() if name not in on_off_flags)
    preset_fields = {field for table in PRESETS.values() for values in table.values() for field in values}
    for name in records.keys() & preset_fields - {"dataset"}:
        assert "or the --preset's" in records[name], name
    assert f"[default: ({RunConfig.model_fields['epochs'].default}, or the --preset's)]" in records["epochs"]
    for name in ("model", "image_size", "augment"):
        assert "the dataset's" in records[name], name
    assert "--preset's" not in records["seed"] and "[default: (0)]" in records["seed"]


def invoke_run(out, *extra):
    result = invoke("run", *RUN_FLAGS, "--out", out, *extra)
    return result, " ".join(result.output.split())


def test_ctrl_c_says_how_to_resume_and_the_rerun_says_where_it_resumes(tmp_path, monkeypatch):
    def interrupt(self, k):
        raise KeyboardInterrupt  # Ctrl-C while round 1 selects: round 0 is saved

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(ActiveLearner, "query", interrupt)
        result, output = invoke_run(out)
    assert result.exit_code == 130
    assert "interrupted: run the same command again to resume; it continues after the last finished round " in output
    assert f"(kept in {out})" in output
    result, output = invoke_run(out)
    assert result.exit_code == 0, output
    assert f"resuming from round 1 in {out} (1 round done, 30 labels)" in output
    assert "round 0 " not in output and "round 1 labeled 60" in output and "final: 60 labels" in output
    result, output = invoke_run(out)
    assert result.exit_code == 0, output
    assert f"{out} holds this run, already finished (2 rounds done, 60 labels)" in output
