"""Random sampling: the baseline every function is compared to."""

from __future__ import annotations

from robustal.acquisition.base import AcquisitionFunction
from robustal.acquisition.registry import register_acquisition


@register_acquisition
class RandomSampling(AcquisitionFunction):
    """Uniformly at random without replacement, from the run's seeded generator."""

    name = "random"

    def _select(self, context, pool, k, rng):
        return rng.choice(pool, size=k, replace=False)
