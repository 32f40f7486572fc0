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
from robustal.cli.settings import given_settings, setting_parameter, with_setting_options
from robustal.retraining import FINE_TUNING_FIELDS, RESULTS, BudgetRecord, make_retrain_config, run_retraining

console = Console(soft_wrap=True)


def _budget_line(acquisition: str, record: BudgetRecord) -> str:
    return (
        f"{acquisition:<17} budget {record.budget:>5}  accuracy {100 * record.clean_accuracy_before:6.2f}% -> "
        f"{100 * record.clean_accuracy_after:6.2f}%  robustness {100 * record.robust_accuracy_before:6.2f}% -> "
        f"{100 * record.robust_accuracy_after:6.2f}%  ({record.seconds:.1f}s)"
    )


@with_setting_options([setting_parameter(name, show_default="the checkpoint's") for name in FINE_TUNING_FIELDS])
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
    seed: Annotated[Optional[int], typer.Option(help="seed of every random choice")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda")] = None,
    data_root: Annotated[Optional[Path], typer.Option(help="folder with datasets; default: the checkpoint's")] = None,
    **values,
) -> None:
    """Test selection: label BUDGETS test inputs and fine-tune a trained model adversarially on them.

    Candidates: the first half of the test split (--candidate-fraction); evaluation: the rest.
    Each budget fine-tunes the checkpoint on its training data plus the selected candidates,
    with the checkpoint's run settings but those given here (the flags after --training).
    Finished budgets are skipped when a run is repeated (resume).
    """
    shared = {"dataset": dataset, "candidate_fraction": candidate_fraction, "evaluation_size": evaluation_size,
              "training": training, "seed": seed, "device": device, "data_root": data_root and str(data_root)}  # fmt: skip
    settings = {**given_settings(values), **{name: value for name, value in shared.items() if value is not None}}
    names = available_acquisitions() if acquisition == "all" else [name.strip() for name in acquisition.split(",")]
    configs = [make_retrain_config(checkpoint=str(checkpoint), budgets=budgets, acquisition=name, **settings) for name in names]
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
    console.print(f"results: {out}/<acquisition>/{RESULTS.name}")


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
