"""AutoAttack (Croce & Hein, ICML 2020) robust accuracy through the official attack code.

The attacks come from the `pyautoattack` package (the official code of fra31/auto-attack, on
PyPI; install ``robustal[eval]``). The standard version runs APGD-CE, APGD-T (9 target
classes), FAB-T and Square (5,000 queries) in turn, each on the points no earlier attack broke;
a subset (e.g. ``apgd-ce,apgd-t``, the cheaper pair that does nearly all the work on MNIST
models) runs with the standard version's parameters. As in RobustBench, a point is robust only
if it is classified correctly clean and no attack breaks it. Always float32, eval mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from robustal.attacks import PGD
from robustal.data.dataset import Split
from robustal.errors import ConfigError, unknown_name_error
from robustal.runtime import batch_slices, model_mode, to_float

STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")  # the standard version, in its order
ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
AUTOATTACK_BATCH_SIZE = 500
AUTOATTACK_NORMS = {"linf": "Linf", "l2": "L2"}  # robustal's norm names -> AutoAttack's


@dataclass(frozen=True)
class AutoAttackResult:
    """Accuracies in [0, 1] on `samples` points: clean, after each attack (cumulative, in the
    order run), and PGD's on the same points for comparison."""

    samples: int
    attacks: tuple[str, ...]
    clean_accuracy: float
    robust_accuracy: float
    accuracy_after: dict[str, float]
    pgd_robust_accuracy: float | None
    pgd_only_broken: int  # points PGD broke that AutoAttack left standing (expected: few)
    seconds: float


def parse_attacks(attacks: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The attacks to run, in the standard version's order: ``None`` / ``"standard"`` = all four of
    the standard version, else a comma-separated list (or sequence) of names from `ATTACKS`."""
    if attacks is None or attacks == "standard":
        return STANDARD_ATTACKS
    names = [name.strip() for name in (attacks.split(",") if isinstance(attacks, str) else attacks)]
    unknown = [name for name in names if name not in ATTACKS]
    if unknown or not names:
        raise ConfigError(f"unknown AutoAttack attack {unknown[0] if unknown else ''!r}; valid: standard or a list of {', '.join(ATTACKS)}")
    return tuple(name for name in ATTACKS if name in names)


def _rate(flags: torch.Tensor) -> float:
    """The share of true `flags`, as an exact fraction of counts (like `robustal.evaluation`)."""
    return int(flags.sum()) / max(len(flags), 1)


def _pyautoattack():
    try:
        import pyautoattack
    except ImportError:
        raise ConfigError(
            "AutoAttack needs the pyautoattack package (the official attack code): pip install 'robustal[eval]'"
        ) from None
    return pyautoattack


def autoattack_accuracy(
    model: nn.Module,
    split: Split,
    eps: float,
    device: torch.device,
    attacks: tuple[str, ...] = STANDARD_ATTACKS,
    seed: int = 0,
    pgd: PGD | None = None,
    batch_size: int = AUTOATTACK_BATCH_SIZE,
    norm: str = "linf",
) -> AutoAttackResult:
    """Robust accuracy of `model` on `split` under the AutoAttack `attacks` at `eps` in `norm`
    (``linf`` or ``l2``, the run's threat model).

    With `pgd`, the same points are also attacked by it (seeded from `seed`), so that a PGD
    robust accuracy below AutoAttack's, a sign of a broken evaluation, can be seen. The global
    torch random state is left as it was (the attacks seed it).
    """
    if norm not in AUTOATTACK_NORMS:
        raise unknown_name_error("norm", norm, tuple(AUTOATTACK_NORMS))
    pyautoattack = _pyautoattack()
    start = time.perf_counter()
    images, labels = to_float(split.images).to(device), split.labels.to(device)

    def correct(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([model(x[part]).argmax(1) == y[part] for part in batch_slices(len(y), batch_size)])

    with model_mode(model, training=False), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        adversary = pyautoattack.AutoAttack(model, norm=AUTOATTACK_NORMS[norm], eps=eps, version="standard", seed=seed, device=device)
        adversary.verbose = False
        clean = correct(images, labels)
        robust = clean.clone()
        accuracy_after = {}
        # one attack at a time on the points still standing: what AutoAttack does inside one call,
        # with the accuracy after each attack kept (a subset keeps the standard version's parameters)
        for attack in attacks:
            standing = robust.nonzero().squeeze(1)
            if len(standing):
                adversary.attacks_to_run = [attack]
                x_adv, _ = adversary.run_standard_evaluation(images[standing], labels[standing], batch_size=batch_size)
                robust[standing] = correct(x_adv, labels[standing])
            accuracy_after[attack] = _rate(robust)
        pgd_accuracy, pgd_only = None, 0
        if pgd is not None:
            generator = torch.Generator(device=device).manual_seed(seed)
            parts = batch_slices(len(labels), batch_size)
            x_pgd = torch.cat([pgd(model, images[part], labels[part], generator) for part in parts])
            pgd_robust = clean & correct(x_pgd, labels)
            pgd_accuracy = _rate(pgd_robust)
            pgd_only = int((robust & ~pgd_robust).sum())
    return AutoAttackResult(
        samples=len(labels),
        attacks=tuple(attacks),
        clean_accuracy=_rate(clean),
        robust_accuracy=_rate(robust),
        accuracy_after=accuracy_after,
        pgd_robust_accuracy=pgd_accuracy,
        pgd_only_broken=pgd_only,
        seconds=time.perf_counter() - start,
    )
