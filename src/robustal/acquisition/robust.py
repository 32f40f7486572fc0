"""ADRE: DRE's density-balanced selection on the entropy of *adversarial* inputs (robustal's own).

DRE (`robustal.acquisition.density`) spreads a batch over the pool's histogram of prediction
entropies. A robust model is trained on adversarial examples, and what it needs to learn is
where its predictions become uncertain *under attack*: a point it classifies confidently may
sit next to a decision boundary within the threat model. ADRE therefore ranks the pool by the
entropy of the model's prediction on a weak PGD example of each point:

1. x' = PGD-`steps` (L-inf, radius `eps`, step 2.5 eps / steps, no random start) against the
   model's own clean prediction y^ = argmax p(x) (no labels are needed);
2. H'(x) = -sum_c p_c(x') log p_c(x');
3. DRE's selection (`dre_positions`: 50 equal-width bins, the authors' quota by default) on H'.

The attack runs on a seeded random subset of the pool (`subset_size`, default 10,000) to bound
its cost: 1 + steps forward and `steps` backward passes per scored point.
"""

from __future__ import annotations

import numpy as np
import torch

from robustal.acquisition.base import AcquisitionFunction, check_positive_int
from robustal.acquisition.density import DRE_BINS, QUOTA_RULES, dre_positions
from robustal.acquisition.registry import register_acquisition
from robustal.acquisition.scoring import entropy, softmax, stream_batches
from robustal.attacks import PGD
from robustal.errors import ConfigError

ADRE_SUBSET = 10_000
MAX_ADRE_STEPS = 50


def adversarial_entropies(model: torch.nn.Module, x: torch.Tensor, attack: PGD) -> torch.Tensor:
    """Entropy (nats) of `model`'s prediction on `attack`'s example of each input of `x`, the
    attack aimed at the model's own clean prediction."""
    with torch.no_grad():
        predicted = model(x).argmax(1)
    x_adv = attack(model, x, predicted)
    with torch.no_grad():
        return entropy(softmax(model(x_adv)))


@register_acquisition
class AdversarialDRE(AcquisitionFunction):
    """ADRE (robustal): DRE on the entropies of PGD examples of the pool (module doc).

    Options: `eps` (L-inf radius in [0, 1] pixels; default 0.3, the paper's MNIST radius: set
    the run's radius for other datasets), `steps` (PGD steps, 1..50; default 3), `subset_size`
    (pool points attacked, default 10,000; None = the whole pool), `bins` and `quota` as DRE's.
    """

    name = "adre"

    def __init__(
        self, eps: float = 0.3, steps: int = 3, subset_size: int | None = ADRE_SUBSET, bins: int = DRE_BINS,
        quota: str = "paper",
    ) -> None:  # fmt: skip
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
            raise ConfigError(f"adre: eps must be a number in (0, 1] (pixels in [0, 1]), got {eps!r}")
        self.steps = check_positive_int(self.name, "steps", steps)
        if self.steps > MAX_ADRE_STEPS:
            raise ConfigError(f"adre: steps must be at most {MAX_ADRE_STEPS} (a few steps suffice), got {steps}")
        self.subset_size = None if subset_size is None else check_positive_int(self.name, "subset_size", subset_size)
        self.bins = check_positive_int(self.name, "bins", bins)
        if quota not in QUOTA_RULES:
            raise ConfigError(f"adre: quota must be one of {', '.join(QUOTA_RULES)}, got {quota!r}")
        self.eps, self.quota = float(eps), quota
        self.attack = PGD(self.eps, 2.5 * self.eps / self.steps, self.steps, random_start=False)

    def _select(self, context, pool, k, rng):
        subset = pool
        if self.subset_size is not None and len(pool) > max(self.subset_size, k):
            subset = np.sort(rng.choice(pool, size=max(self.subset_size, k), replace=False))
        scores = stream_batches(
            context, subset, lambda x: adversarial_entropies(context.model, x, self.attack), gradients=True
        )
        return subset[dre_positions(scores.double().numpy(), k, rng, self.bins, self.quota)]
