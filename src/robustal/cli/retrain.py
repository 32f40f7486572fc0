"""``robustal retrain``: test selection for retraining a trained model (see `robustal.retraining`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from robustal.acquisition import available_acquisitions
from robustal.outputs import prepare_output_dir
from robustal.retraining import RESULTS_FILE, BudgetRecord, make_retrain_config, run_retraining

console = Console(soft_wrap=True)


def _budget_line(acquisition: str, record: BudgetRecord) -> str:
    return (
        f"{acquisition:<17} budget {record.budget:>5}  accuracy {100 * record.clean_accuracy_before:6.2f}% -> "
        f"{100 * record.clean_accuracy_after:6.2f}%  robustness {100 * record.robust_accuracy_before:6.2f}% -> "
        f"{100 * record.robust_accuracy_after:6.2f}%  ({record.seconds:.1f}s)"
    )


def retrain_command(
    checkpoint: Annotated[Path, typer.Option(help="run directory (or its checkpoint.pt) written by `robustal run --out`")],
    budgets: Annotated[str, typer.Option(help="counts or percentages of the candidate pool: 100,200,500 or 1%,2%,5%")],
    acquisition: Annotated[
        str, typer.Option(help="acquisition function, a comma-separated list, or 'all' (every registered one)")
    ] = "dre",
    out: Annotated[Path, typer.Option(help="folder: OUT/<acquisition>/results.parquet")] = Path("runs/retrain"),
    dataset: Annotated[Optional[str], typer.Option(help="default: the checkpoint's (must match it)")] = None,
    candidate_fraction: Annotated[Optional[float], typer.Option(help="test split share of candidates (0.5)")] = None,
    evaluation_size: Annotated[Optional[int], typer.Option(help="evaluation samples used; default: all the rest")] = None,
    training: Annotated[Optional[str], typer.Option(help="fine-tuning regime: pgd (default) or standard")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="fine-tuning epochs per budget; default: the checkpoint's")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="default: the checkpoint's")] = None,
    lr: Annotated[Optional[float], typer.Option(help="learning rate; default: the checkpoint's")] = None,
    eps: Annotated[Optional[float], typer.Option(help="L-inf attack radius; default: the checkpoint's")] = None,
    step_size: Annotated[Optional[float], typer.Option(help="PGD step size; default: the checkpoint's")] = None,
    train_steps: Annotated[Optional[int], typer.Option(help="PGD steps in training; default: the checkpoint's")] = None,
    eval_steps: Annotated[Optional[int], typer.Option(help="PGD steps for robust accuracy; default: the checkpoint's")] = None,
    validation_size: Annotated[Optional[int], typer.Option(help="validation samples for model selection")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of every random choice")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda")] = None,
    data_root: Annotated[Optional[Path], typer.Option(help="folder with datasets; default: the checkpoint's")] = None,
) -> None:
    """Test selection: label BUDGETS test inputs and fine-tune a trained model adversarially on them.

    Candidates: the first half of the test split (--candidate-fraction); evaluation: the rest.
    Each budget fine-tunes the checkpoint on its training data plus the selected candidates.
    Finished budgets are skipped when a run is repeated (resume).
    """
    settings = {
        name: value
        for name, value in locals().items()
        if value is not None and name not in ("acquisition", "out", "checkpoint", "data_root")
    }
    if data_root is not None:
        settings["data_root"] = str(data_root)
    names = available_acquisitions() if acquisition == "all" else [name.strip() for name in acquisition.split(",")]
    configs = [make_retrain_config(checkpoint=str(checkpoint), acquisition=name, **settings) for name in names]
    prepare_output_dir(out)
    frames = []
    for config in configs:
        run_dir = out / config.acquisition
        console.print(f"retrain {config.run_id()} ({config.acquisition}) -> {run_dir}")
        def on_budget(record: BudgetRecord, name: str = config.acquisition) -> None:
            console.print(_budget_line(name, record))

        frames.append(run_retraining(config, run_dir, on_budget=on_budget))
    table = pd.concat(frames, ignore_index=True)
    console.print(_gain_table(table))
    console.print(f"results: {out}/<acquisition>/{RESULTS_FILE}")


def _gain_table(table: pd.DataFrame) -> Table:
    first = table.iloc[0]
    rich_table = Table(
        title=f"robustness gain over the starting model ({100 * first.robust_accuracy_before:.2f}% robust, "
        f"{100 * first.clean_accuracy_before:.2f}% accurate on the evaluation split of {first.dataset})"
    )
    for column in ("acquisition", "budget", "accuracy %", "robustness %", "robustness gain"):
        rich_table.add_column(column, justify="left" if column == "acquisition" else "right")
    for row in table.sort_values(["budget", "robust_accuracy_after"], ascending=[True, False]).itertuples():
        rich_table.add_row(
            row.acquisition,
            str(row.budget),
            f"{100 * row.clean_accuracy_after:.2f}",
            f"{100 * row.robust_accuracy_after:.2f}",
            f"{100 * row.robust_gain:+.2f}",
        )
    return rich_table
