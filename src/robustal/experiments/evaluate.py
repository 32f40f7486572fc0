"""``robustal evaluate``: AutoAttack on the final model of a run, or of every finished run of a study.

Each evaluation is stored in the run's directory as ``autoattack-<attacks>-n<samples>.json``
(written atomically): evaluating again skips what is there, so an interrupted study evaluation
resumes, and the run's own files are never touched. The points are the first `n` of the run's
test split (default: the run's ``test_size``); the PGD numbers in the file come from the run's
evaluation attack (PGD-``eval_steps`` with random start) on the same points. Both attack the
run's model in float32 always, in the run's memory format and with its BatchNorm folded when the
run has ``channels_last`` / ``fold_batchnorm`` (float rounding only; 2-3x faster on a CPU).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from robustal.autoattack import AUTOATTACK_NORMS, STANDARD_ATTACKS, autoattack_accuracy, parse_attacks
from robustal.errors import ConfigError, RobustALError
from robustal.experiments.store import MANIFEST_FILE, read_manifest, rounds_completed, run_directory
from robustal.loop import read_run_config
from robustal.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    EVALUATION_PREFIX,
    job_state,
    read_json,
    round_checkpoint_name,
    versions,
    write_json,
)

def evaluation_file(run_dir: Path, attacks: tuple[str, ...], samples: int, round_number: int | None = None) -> Path:
    """Where the evaluation of `attacks` on `samples` test points of the run at `run_dir` (its
    final model, or the kept checkpoint of round `round_number`) is stored."""
    name = "standard" if attacks == STANDARD_ATTACKS else "+".join(attacks)
    which = "" if round_number is None else f"-round{round_number:02d}"
    return run_dir / f"{EVALUATION_PREFIX}{name}-n{samples}{which}.json"


def kept_rounds(run_dir: Path) -> list[int]:
    """The rounds whose checkpoints the run kept (``keep_round_checkpoints``), ascending."""
    prefix, suffix = round_checkpoint_name(0).split("00")
    numbers = (path.name.removeprefix(prefix).removesuffix(suffix) for path in run_dir.glob(f"{prefix}*{suffix}"))
    return sorted(int(number) for number in numbers if number.isdigit())


def needs_evaluation(run_dir: Path, section: dict | None) -> bool:
    """Whether a study's `evaluate` section (attacks, n) asks for an evaluation of the run's final
    model that `run_dir` does not hold yet."""
    if section is None:
        return False
    attacks = parse_attacks(section.get("attacks"))
    n = section.get("n")
    if n is not None:
        return not evaluation_file(run_dir, attacks, n).exists()
    pattern = evaluation_file(run_dir, attacks, 0).name.replace("-n0.json", "-n*.json")
    return not any(path.name.count("-round") == 0 for path in run_dir.glob(pattern))


def models_to_evaluate(run_dir: Path, all_rounds: bool) -> list[int | None]:
    """The checkpoints `evaluate_study` attacks in a run: its final model (None) and, with
    `all_rounds`, every kept round's (the last kept round is the final model: attacked once)."""
    if not all_rounds:
        return [None]
    kept = kept_rounds(run_dir)
    final_round = rounds_completed(run_dir) - 1
    return kept if final_round in kept else [*kept, None]


def evaluate_run(
    run_dir: str | os.PathLike,
    attacks: str | tuple[str, ...] | None = None,
    samples: int | None = None,
    data_root: str | os.PathLike | None = None,
    device: str = "auto",
    round_number: int | None = None,
) -> tuple[dict[str, Any], bool]:
    """AutoAttack on the final model of the run at `run_dir` (or on round `round_number`'s kept
    checkpoint); returns (the stored evaluation, whether it was computed now: False when it was
    already on disk)."""
    import torch

    from robustal.accel import Execution
    from robustal.attacks import PGD
    from robustal.data import load_dataset
    from robustal.loop import load_checkpoint
    from robustal.runtime import select_device
    from robustal.seeding import derive_seed

    run_dir = Path(run_dir)
    attacks = parse_attacks(attacks)
    checkpoint = run_dir / (CHECKPOINT_FILE if round_number is None else round_checkpoint_name(round_number))
    if not checkpoint.is_file():
        kept = ", ".join(map(str, kept_rounds(run_dir))) or "none (run with --keep-round-checkpoints to keep them)"
        what = "checkpoint" if round_number is None else f"checkpoint of round {round_number} (kept rounds: {kept})"
        raise ConfigError(f"no {what} in {run_dir}: evaluate needs a run directory written by `robustal run --out`")
    config = read_run_config(run_dir)
    # an evaluation already on disk is returned without loading the dataset
    known = samples or config.test_size
    if known is not None and (target := evaluation_file(run_dir, attacks, known, round_number)).exists():
        return read_json(target), False
    dataset = load_dataset(config.dataset, data_root or config.data_root, config.image_size)
    available = len(dataset.test)
    samples = samples or min(config.test_size or available, available)
    if not 1 <= samples <= available:
        raise ConfigError(f"--n must be between 1 and the {available} test images of {config.dataset}, got {samples}")
    target = evaluation_file(run_dir, attacks, samples, round_number)
    if target.exists():
        return read_json(target), False
    torch_device = select_device(device)
    model, config, state = load_checkpoint(checkpoint, device=str(torch_device))
    split = dataset.test.subset(slice(0, samples))
    pgd = PGD(config.eps, config.step_size, config.eval_steps, True, config.norm)
    seed = derive_seed(config.seed, "autoattack") % 2**31
    # the run's memory format and folded BatchNorm (float rounding only, 2-3x faster on a CPU),
    # but always float32: no bf16, and no compile or CUDA graphs around AutoAttack's own loops
    execution = Execution(torch_device, "fp32", config.channels_last, fold_batchnorm=config.fold_batchnorm)
    model = execution.prepare(model).eval()
    with execution.context():
        result = autoattack_accuracy(execution.attack_view(model), split, config.eps, torch_device, attacks, seed, pgd, norm=config.norm)
    payload = {
        "run_id": state["run_id"],
        "round": len(state["records"]) - 1,
        "labeled": int(len(state["labeled_indices"])),
        "eps": config.eps,
        "norm": AUTOATTACK_NORMS[config.norm],
        "pgd_steps": config.eval_steps,
        "version": "standard" if attacks == STANDARD_ATTACKS else "custom",
        "execution": {"precision": "fp32", "channels_last": config.channels_last, "fold_batchnorm": config.fold_batchnorm},
        **asdict(result),
        "attacks": list(result.attacks),
        "versions": _versions(),
    }
    write_json(target, payload)
    return payload, True


def _versions() -> dict[str, str]:
    import pyautoattack

    return {**versions(), "pyautoattack": pyautoattack.__version__}


def evaluate_study(
    study_dir: str | os.PathLike,
    attacks: str | tuple[str, ...] | None = None,
    samples: int | None = None,
    data_root: str | os.PathLike | None = None,
    device: str = "auto",
    on_run: Callable[[str, dict[str, Any] | None, bool, str | None], None] | None = None,
    all_rounds: bool = False,
) -> dict[str, str]:
    """Evaluate every finished run of the study at `study_dir` (see `evaluate_run`; with
    `all_rounds`, every kept round checkpoint too); runs not finished yet are left for a later
    call. Returns each run's outcome: ``computed``, ``skipped`` (already evaluated), ``not
    finished`` or ``failed: <reason>``. `on_run(run_id, evaluation, computed, error)` is called
    after each evaluation."""
    study_dir = Path(study_dir)
    if not (study_dir / MANIFEST_FILE).exists():
        raise ConfigError(f"{study_dir} is not a study directory (no {MANIFEST_FILE}): pass the --out of `robustal study run`")
    outcomes: dict[str, str] = {}
    for run_id in read_manifest(study_dir):
        run_dir = run_directory(study_dir, run_id)
        if job_state(run_dir) != "done":
            outcomes[run_id] = "not finished"
            continue
        outcomes[run_id] = "skipped"
        for round_number in models_to_evaluate(run_dir, all_rounds):
            try:
                evaluation, computed = evaluate_run(run_dir, attacks, samples, data_root, device, round_number)
            except RobustALError as error:
                outcomes[run_id] = f"failed: {error}"
                if on_run is not None:
                    on_run(run_id, None, False, str(error))
                break
            if computed:
                outcomes[run_id] = "computed"
            if on_run is not None:
                on_run(run_id, evaluation, computed, None)
    return outcomes


def is_run_directory(path: Path) -> bool:
    """Whether `path` holds one run (``config.json`` + ``checkpoint.pt``) rather than a study."""
    return (path / CONFIG_FILE).is_file() and not (path / MANIFEST_FILE).exists()
