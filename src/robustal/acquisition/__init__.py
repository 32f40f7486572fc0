"""Acquisition functions: one registry, one base class, a family per module.

=====================  ==============================================================
name                   selects (module)
=====================  ==============================================================
``random``             uniformly at random (baseline)
``entropy``            highest entropy H(p) (uncertainty)
``margin``             smallest p_(1) - p_(2) (uncertainty)
``least_confidence``   smallest p_(1) (uncertainty)
``gini``               highest 1 - sum p_c^2, DeepGini (uncertainty)
``mcp``                round-robin over (top, second) class groups by p_(2) / p_(1) (uncertainty)
``entropy_dropout``    highest entropy of the mean of T MC dropout passes (dropout)
``bald``               highest mutual information over T MC dropout passes (dropout)
``kcenter``            k-center greedy in softmax or embedding space (diversity)
``egl``                highest expected input-gradient length (adversarial)
``dfal``               smallest DeepFool perturbation on a random subset (adversarial)
``dre``                the pool's entropy histogram, kept by stratified sampling (density)
``badge``              k-means++ seeding on last-layer gradient embeddings (badge)
``adre``               DRE on the entropies of PGD examples of the pool: robustal's own (robust)
``typiclust``          the most typical point of each large uncovered k-means cluster (typicality)
``probcover``          greedy max coverage of delta-balls in the embedding (typicality)
=====================  ==============================================================

>>> from robustal.acquisition import build_acquisition, available_acquisitions
>>> build_acquisition("dre", bins=50)
DensityRobustEntropy(bins=50)
"""

from robustal.acquisition import adversarial as _adversarial  # noqa: F401  (registers functions)
from robustal.acquisition import badge as _badge  # noqa: F401
from robustal.acquisition import baseline as _baseline  # noqa: F401
from robustal.acquisition import density as _density  # noqa: F401
from robustal.acquisition import diversity as _diversity  # noqa: F401
from robustal.acquisition import dropout as _dropout  # noqa: F401
from robustal.acquisition import robust as _robust  # noqa: F401
from robustal.acquisition import typicality as _typicality  # noqa: F401
from robustal.acquisition import uncertainty as _uncertainty  # noqa: F401
from robustal.acquisition.base import AcquisitionFunction, PoolContext, ScoreAcquisition, top_k
from robustal.acquisition.registry import (
    available_acquisitions,
    build_acquisition,
    check_acquisition_name,
    identity_options,
    register_acquisition,
)

__all__ = [
    "AcquisitionFunction",
    "PoolContext",
    "ScoreAcquisition",
    "available_acquisitions",
    "build_acquisition",
    "check_acquisition_name",
    "identity_options",
    "register_acquisition",
    "top_k",
]
