"""``robustal evaluate``: AutoAttack on the final model of a run or of every finished run of a study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console(soft_wrap=True)


def _line(name: str, evaluation: dict, computed: bool) -> str:
    pgd = evaluation["pgd_robust_accuracy"]
    gap = f"  PGD-{evaluation['pgd_steps']} {100 * pgd:6.2f}% (gap {100 * (pgd - evaluation['robust_accuracy']):+.2f})"
    warning = "  [red]PGD below AutoAttack: check the evaluation[/red]" if pgd < evaluation["robust_accuracy"] else ""
    how = f"{evaluation['seconds']:.0f}s" if computed else "already evaluated"
    return (
        f"{name}  {evaluation['labeled']} labels  accuracy {100 * evaluation['clean_accuracy']:6.2f}%  "
        f"AutoAttack ({'+'.join(evaluation['attacks'])}, {evaluation['samples']} images) "
        f"{100 * evaluation['robust_accuracy']:6.2f}%{gap}  ({how}){warning}"
    )


def evaluate_command(
    path: Annotated[Path, typer.Argument(help="a run directory (robustal run --out) or a study directory (study run --out)")],
    attacks: Annotated[
        str, typer.Option(help="standard (APGD-CE, APGD-T, FAB-T, Square) or a list such as apgd-ce,apgd-t")
    ] = "standard",
    n: Annotated[Optional[int], typer.Option("--n", help="first N test images; default: the run's test split")] = None,
    data_root: Annotated[Optional[Path], typer.Option(help="folder with datasets; default: the run's")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="torch threads; default: torch's")] = None,
    round: Annotated[
        Optional[int], typer.Option("--round", help="a run's kept round checkpoint (run --keep-round-checkpoints)")
    ] = None,
    all_rounds: Annotated[bool, typer.Option("--all-rounds", help="every kept round checkpoint too")] = False,
) -> None:
    """AutoAttack robust accuracy of the final model of a run, or of every finished run of a study.

    Always fp32. Results are stored in each run's directory (autoattack-*.json) and shown by
    `robustal study results` and `robustal report`; runs already evaluated are skipped.
    """
    import torch

    from robustal.experiments.evaluate import evaluate_run, evaluate_study, is_run_directory, models_to_evaluate

    if threads is not None:
        torch.set_num_threads(max(1, threads))
    if is_run_directory(path):
        for number in [round] if round is not None else models_to_evaluate(path, all_rounds):
            evaluation, computed = evaluate_run(path, attacks, n, data_root, device, number)
            console.print(_line(f"{path} round {evaluation['round']}", evaluation, computed))
        return

    def on_run(run_id: str, evaluation: dict | None, computed: bool, error: str | None) -> None:
        console.print(f"{run_id}  [red]failed: {error}[/red]" if error else _line(run_id, evaluation, computed))

    outcomes = evaluate_study(path, attacks, n, data_root, device, on_run=on_run, all_rounds=all_rounds)
    waiting = sum(1 for outcome in outcomes.values() if outcome == "not finished")
    failed = sum(1 for outcome in outcomes.values() if outcome.startswith("failed"))
    console.print(
        f"{len(outcomes) - waiting - failed} of {len(outcomes)} runs evaluated"
        + (f"; {waiting} not finished yet (evaluate again later)" if waiting else "")
        + (f"; {failed} failed" if failed else "")
    )
    if failed:
        raise typer.Exit(1)
