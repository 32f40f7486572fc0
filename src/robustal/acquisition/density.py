"""DRE: density-based robust sampling with entropy (Guo et al., "Robust Active Learning:
Sample-Efficient Training of Robust Deep Learning Models", 2021; journal version "DRE:
density-based data selection with entropy for adversarial-robust deep learning models",
Neural Computing and Applications, 2022).

The batch is drawn across the pool's entropy distribution instead of only its most uncertain end:

1. H(x) = -sum_c p_c(x) log p_c(x) for every pool sample x;
2. histogram the entropies into `bins` (50) equal-width bins over [min H, max H]: bin b holds
   [e_b, e_{b+1}); the last bin also holds its top edge, max H. When all entropies are equal,
   every sample falls into one bin;
3. give every bin b (n_b of the N pool samples) a quota s_b of the k samples, by one of two rules:

   - ``quota="paper"`` (default), the authors' rule (``utils.py:dreSel`` in testing-cs/robustAL):
     s_b = min(ceil(k n_b / N), n_b), so every non-empty bin gets at least one sample; the bins'
     picks are concatenated from low to high entropy and the last k kept, i.e. the overshoot
     sum s_b - k is cut from the lowest-entropy bins (`paper_quotas`). This **skews the batch
     towards high entropy**, and the more so the smaller k is against the number of non-empty
     bins (k = 200 from a trained LeNet-5's MNIST pool: mean selected entropy 0.67 bits against
     the pool's 0.46);
   - ``quota="proportional"``: the largest-remainder rule (`largest_remainder_quotas`): the
     batch's histogram is as close to the pool's as integers allow (stratified random sampling);

4. draw each bin's quota uniformly at random, without replacement, inside the bin.

Unlike the authors' code (whose strict ``<`` on the top edge loses the maximum-entropy sample,
and whose truncation can return fewer or repeated samples), both rules always return exactly k
unique samples.
"""

from __future__ import annotations

import numpy as np

from robustal.acquisition.base import AcquisitionFunction, check_positive_int
from robustal.acquisition.registry import register_acquisition
from robustal.acquisition.scoring import entropy, predict_probabilities
from robustal.errors import ConfigError

DRE_BINS = 50


def histogram_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """The bin (0 .. bins-1) of every value among `bins` equal-width bins over [min, max].

    Bin b is [e_b, e_{b+1}) with e = linspace(min, max, bins + 1), except that the last bin is
    closed, so the maximum belongs to it (same counts as ``numpy.histogram``). All-equal values
    share one bin (the last).
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)
    edges = np.linspace(values.min(), values.max(), bins + 1)
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)


def largest_remainder_quotas(counts: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Integers s_b summing to `k`, proportional to `counts` n_b: the largest-remainder rule.

    Every bin first gets floor(q_b) of its ideal share q_b = k n_b / N (N = sum n_b, exact
    integer arithmetic); the k - sum floor(q_b) samples left over go one each to the bins with
    the largest remainders q_b - floor(q_b); bins with equal remainders are ordered at random by
    `rng` (so no end of the entropy range is favoured). Hence |s_b - q_b| < 1 for every bin, which
    minimises both the largest and the total deviation from the pool's histogram among all
    integer apportionments of k.

    No quota exceeds its bin: a bin gets floor(q_b) + 1 only when q_b is not an integer, and
    then q_b < n_b (q_b = n_b only when k = N, an integer), so floor(q_b) + 1 <= n_b. Nothing
    ever needs to spill over to another bin.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if not 0 <= k <= total:
        raise ConfigError(f"cannot apportion {k} samples over bins holding {total}")
    shares = k * counts  # q_b * N, exactly
    quotas = shares // total
    remainders = shares % total
    left_over = k - int(quotas.sum())
    order = np.lexsort((rng.random(len(counts)), -remainders))
    quotas[order[:left_over]] += 1
    return quotas


def paper_quotas(counts: np.ndarray, k: int) -> np.ndarray:
    """The authors' quotas: every bin's share rounded up, min(ceil(k n_b / N), n_b), then the
    overshoot removed from the lowest bins first (their code keeps the last k samples of the
    bins' picks concatenated from low to high entropy). Sums to exactly `k`.

    The rounded-up shares sum to at least k (each is >= k n_b / N, as n_b >= k n_b / N for
    k <= N), so the cut never runs out of samples.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if not 0 <= k <= total:
        raise ConfigError(f"cannot apportion {k} samples over bins holding {total}")
    quotas = np.minimum(-(-k * counts // total), counts)  # ceil in exact integer arithmetic
    overshoot = np.cumsum(quotas) - (int(quotas.sum()) - k)  # what is left of each prefix after the cut
    return np.clip(overshoot, 0, quotas)


QUOTA_RULES = ("paper", "proportional")


def dre_positions(
    entropies: np.ndarray, k: int, rng: np.random.Generator, bins: int = DRE_BINS, quota: str = "paper"
) -> np.ndarray:
    """Positions of the `k` samples DRE draws given the pool's `entropies` (see the module doc)."""
    bin_of = histogram_bins(entropies, bins)
    counts = np.bincount(bin_of, minlength=bins)
    quotas = paper_quotas(counts, k) if quota == "paper" else largest_remainder_quotas(counts, k, rng)
    by_bin = np.argsort(bin_of, kind="stable")
    members = np.split(by_bin, np.cumsum(counts)[:-1])
    chosen = [rng.choice(members[b], size=quotas[b], replace=False) for b in np.flatnonzero(quotas)]
    return np.concatenate(chosen)


@register_acquisition
class DensityRobustEntropy(AcquisitionFunction):
    """DRE (Guo et al., 2021): k samples drawn across the pool's entropy histogram (module doc).

    Options: `bins`, the number of equal-width entropy bins (paper: 50); `quota`, how k is shared
    over the bins: ``"paper"`` (default; the authors' round-up-and-cut-the-low-end rule, which
    skews the batch towards high entropy, most for small k) or ``"proportional"`` (largest
    remainder: the batch keeps the pool's entropy histogram, stratified random sampling).
    """

    name = "dre"
    # `quota` changed what a plain `dre` computes: runs name it in their ids (see RunConfig.identity)
    identity_defaults = {"quota": "paper"}

    def __init__(self, bins: int = DRE_BINS, quota: str = "paper") -> None:
        self.bins = check_positive_int(self.name, "bins", bins)
        if quota not in QUOTA_RULES:
            raise ConfigError(f"dre: quota must be one of {', '.join(QUOTA_RULES)}, got {quota!r}")
        self.quota = quota

    def _select(self, context, pool, k, rng):
        entropies = entropy(predict_probabilities(context, pool)).double().numpy()
        return pool[dre_positions(entropies, k, rng, self.bins, self.quota)]
