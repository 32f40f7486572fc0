"""Seeds for every random choice, derived from the run's seed and a purpose.

A purpose is a tuple of strings and integers (e.g. ``("select", 3)`` for round 3's selection).
The same (seed, purpose) always gives the same stream, independently of what ran before,
so an interrupted run that resumes at round r draws exactly what an uninterrupted one draws.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


def _key(part: str | int) -> int:
    if isinstance(part, str):
        return zlib.crc32(part.encode())
    if part < 0:
        raise ValueError(f"seed parts must be non-negative, got {part}")
    return int(part)


def derive_seed(seed: int, *purpose: str | int) -> int:
    """A 63-bit seed derived from `seed` and `purpose` (stable across processes and versions)."""
    sequence = np.random.SeedSequence([_key(seed), *(_key(p) for p in purpose)])
    return int(sequence.generate_state(1, np.uint64)[0] & np.uint64(2**63 - 1))


def numpy_rng(seed: int, *purpose: str | int) -> np.random.Generator:
    """A numpy Generator for `purpose` within the run seeded by `seed`."""
    return np.random.default_rng(derive_seed(seed, *purpose))


def torch_generator(seed: int, *purpose: str | int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch Generator on `device` for `purpose` within the run seeded by `seed`."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, *purpose))
    return generator
