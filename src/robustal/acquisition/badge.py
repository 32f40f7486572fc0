"""BADGE: batch active learning by diverse gradient embeddings (Ash, Zhang, Krishnamurthy,
Langford & Agarwal, "Deep Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds",
ICLR 2020).

Every pool sample x gets the gradient of the cross-entropy at its *predicted* class
yhat = argmax_c p_c(x) with respect to the last linear layer's weights W (classes x d):

    g(x) = dCE(W h(x) + b, yhat) / dW = (p(x) - e_yhat) h(x)^T,

h(x) the penultimate embedding (the head's input). Its norm grows with the model's uncertainty
(the residual p - e_yhat) and its direction carries the sample's features; k-means++ seeding
(D^2 sampling) on these embeddings picks a batch that is both uncertain and diverse.

Memory: g(x) is an outer product, so it is never materialised. With r = p - e_yhat,
<g(x), g(y)> = <r(x), r(y)> <h(x), h(y)>, hence

    ||g(x) - g(c)||^2 = ||r(x)||^2 ||h(x)||^2 + ||r(c)||^2 ||h(c)||^2 - 2 <r(x), r(c)> <h(x), h(c)>,

one matrix-vector product with the residuals and one with the embeddings per chosen center. The
selection holds n x (classes + d) float64 numbers plus O(n) vectors: 50,000 x (10 + 84) x 8 B =
38 MB for LeNet-5 on MNIST (the materialised n x classes*d embedding would be 168 MB in float32),
and one step costs O(n (classes + d)) instead of O(n classes d).
"""

from __future__ import annotations

import numpy as np
import torch

from robustal.acquisition.base import AcquisitionFunction
from robustal.acquisition.registry import register_acquisition
from robustal.acquisition.scoring import softmax, stream_batches


def last_layer_factors(context, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the gradient embeddings of training-set `indices`: the residuals
    r = p - e_argmax(p), shape (n, classes), and the penultimate embeddings h, shape (n, d)
    (float32 on the CPU, computed in bounded batches by `stream_batches`)."""
    model = context.model

    def compute(x: torch.Tensor) -> torch.Tensor:
        features = model.embed(x)
        probabilities = softmax(model.head(features))
        predicted = torch.nn.functional.one_hot(probabilities.argmax(dim=1), probabilities.shape[1])
        return torch.cat([probabilities - predicted, features.float()], dim=1)

    both = stream_batches(context, indices, compute)
    classes = model.head.out_features
    return both[:, :classes], both[:, classes:]


def gradient_embeddings(residuals: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The materialised embeddings g = r h^T flattened row-major, shape (n, classes * d): the
    gradient with respect to ``head.weight`` (for reference and tests; the selection never
    builds it)."""
    return (residuals[:, :, None] * features[:, None, :]).flatten(1)


def kmeans_plus_plus_factored(residuals: torch.Tensor, features: torch.Tensor, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of `k` distinct k-means++ seeds among the embeddings g_i = r_i h_i^T.

    As the authors' code (``init_centers`` in JordanAsh/badge): the first seed is the embedding
    of largest norm (ties: the earlier position), each further seed is drawn from `rng` with
    probability proportional to D^2, its squared distance to the nearest seed so far. Seeds have
    D = 0 and are never drawn again; if every remaining sample coincides with a seed (all D = 0),
    the next seed is drawn uniformly among the samples not yet chosen.
    """
    r = residuals.double()
    h = features.double()
    norms = (r * r).sum(dim=1) * (h * h).sum(dim=1)  # ||g_i||^2
    nearest = torch.full_like(norms, float("inf"))
    chosen = np.empty(k, dtype=np.int64)
    available = np.ones(len(norms), dtype=bool)
    for step in range(k):
        if step == 0:
            position = int(torch.argmax(norms))
        else:
            weights = nearest.numpy()
            total = float(weights.sum())
            if total > 0.0:
                position = min(int(np.searchsorted(np.cumsum(weights), rng.random() * total, side="right")), len(weights) - 1)
            else:
                position = int(rng.choice(np.flatnonzero(available)))
        chosen[step] = position
        available[position] = False
        distances = norms + norms[position] - 2.0 * torch.mv(r, r[position]) * torch.mv(h, h[position])
        torch.minimum(nearest, distances.clamp_min_(0.0), out=nearest)
        nearest[position] = 0.0  # exactly 0 despite rounding, and a minimum never raises it again
    return chosen


@register_acquisition
class Badge(AcquisitionFunction):
    """BADGE (Ash et al., ICLR 2020): k-means++ seeding on the last layer's gradient embeddings
    g(x) = (p(x) - e_argmax p(x)) h(x)^T (module doc). The first seed is the largest-norm
    embedding, as the authors' code; the rest are D^2-sampled from the run's generator. The labeled
    set plays no part (as in the paper). Memory: O(pool x (classes + d)), never the
    pool x classes*d matrix.
    """

    name = "badge"

    def _select(self, context, pool, k, rng):
        residuals, features = last_layer_factors(context, pool)
        return pool[kmeans_plus_plus_factored(residuals, features, k, rng)]
