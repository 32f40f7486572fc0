"""Acquisition functions: one registry, one base class, a family per module.

>>> from robustal.acquisition import build_acquisition, available_acquisitions
>>> build_acquisition("entropy")
"""

from robustal.acquisition import baseline as _baseline  # noqa: F401  (registers functions)
from robustal.acquisition import uncertainty as _uncertainty  # noqa: F401
from robustal.acquisition.base import AcquisitionFunction, PoolContext, ScoreAcquisition, top_k
from robustal.acquisition.registry import (
    available_acquisitions,
    build_acquisition,
    check_acquisition_name,
    register_acquisition,
)

__all__ = [
    "AcquisitionFunction",
    "PoolContext",
    "ScoreAcquisition",
    "available_acquisitions",
    "build_acquisition",
    "check_acquisition_name",
    "register_acquisition",
    "top_k",
]
