"""Low-budget selection by typicality and coverage in an embedding space: TypiClust (Hacohen,
Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies Suit High and Low Budgets",
ICML 2022) and ProbCover (Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering
Lens", NeurIPS 2022).

Both work on the model's penultimate embedding scaled to unit length (the authors use normalised
self-supervised features), of the labeled set and the pool together. Nothing of size
N x N is built: distances are computed in row blocks of at most `DISTANCE_CHUNK_ELEMENTS` entries.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse

from robustal.acquisition.base import AcquisitionFunction, check_positive_int
from robustal.acquisition.diversity import DISTANCE_CHUNK_ELEMENTS, nearest_center_distances
from robustal.acquisition.registry import register_acquisition
from robustal.acquisition.scoring import embeddings
from robustal.errors import ConfigError, DataError

TYPICLUST_NEIGHBOURS = 20  # K of the typicality (the authors' code)
TYPICLUST_MAX_CLUSTERS = 500  # the authors' MAX_NUM_CLUSTERS
TYPICLUST_MIN_CLUSTER_SIZE = 5  # clusters of at most this many points come last (authors: dropped)
PROBCOVER_PURITY = 0.95  # the authors' alpha
MAX_OPTION = 100_000  # bound on the integer options
MAX_GRAPH_EDGES = 50_000_000  # ProbCover's delta-ball graph: 400 MB of int32 pairs at most


def load_embedding(path: str | None) -> np.ndarray | None:
    """A fixed embedding given by the user: a ``.npy`` file of one float row per training image
    (the dataset's training split, in its order), read without pickles; None without a path.
    Anything else is a `DataError` naming the file."""
    if path is None:
        return None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as error:  # any decoding failure of a user's file
        raise DataError(f"cannot read the embedding {path}: {error}") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise DataError(f"the embedding {path} must be a 2-D array of finite floats (one row per training image)")
    return array


def unit_embeddings(context, labeled: np.ndarray, pool: np.ndarray, fixed: np.ndarray | None = None) -> torch.Tensor:
    """Embeddings of the labeled samples then the pool, each scaled to unit length (float32,
    rows: labeled first): the model's penultimate embedding, or the rows of a `fixed` one."""
    indices = np.concatenate([labeled, pool])
    if fixed is None:
        features = embeddings(context, indices)
    elif len(fixed) != len(context.images):
        raise DataError(
            f"the embedding has {len(fixed)} rows but the training split {len(context.images)} images: one row per image"
        )
    else:
        features = torch.from_numpy(np.asarray(fixed[indices], dtype=np.float32))
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _row_blocks(count: int, columns: int, chunk_elements: int = DISTANCE_CHUNK_ELEMENTS):
    step = max(1, chunk_elements // max(1, columns))
    for start in range(0, count, step):
        yield slice(start, min(start + step, count))


def squared_distances(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """||a - b||^2 for every pair of `rows` x `columns`, clamped at 0 against rounding."""
    return ((rows * rows).sum(1)[:, None] - 2.0 * rows @ columns.T + (columns * columns).sum(1)[None, :]).clamp_min_(0.0)


def mean_neighbour_distances(points: torch.Tensor, neighbours: int, chunk_elements: int = DISTANCE_CHUNK_ELEMENTS) -> torch.Tensor:
    """Mean Euclidean distance of every point to its `neighbours` nearest other points (n,);
    requires 1 <= neighbours < n."""
    means = torch.empty(len(points), dtype=points.dtype)
    for block in _row_blocks(len(points), len(points), chunk_elements):
        nearest = torch.topk(squared_distances(points[block], points), neighbours + 1, dim=1, largest=False).values
        means[block] = nearest[:, 1:].sqrt().mean(dim=1)  # the smallest is the point itself (0)
    return means


def typicality(points: torch.Tensor, neighbours: int = TYPICLUST_NEIGHBOURS) -> np.ndarray:
    """TypiClust's typicality, the inverse mean distance to the K nearest neighbours,
    Typ(x) = (1/K sum_{y in KNN(x)} ||x - y||_2)^-1, with K = min(`neighbours`, n // 2) as the
    authors' code does for small clusters (their code averages squared distances; this is the
    paper's formula). A cluster of one point has typicality 0."""
    count = min(neighbours, len(points) // 2)
    if count < 1:
        return np.zeros(len(points))
    return 1.0 / (mean_neighbour_distances(points, count).double().numpy() + 1e-5)


def seeded_kmeans_labels(points: torch.Tensor, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Cluster labels of `points` by k-means (scikit-learn's KMeans up to 50 clusters, else
    MiniBatchKMeans, as the TypiClust code), seeded from `rng`."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    data = points.double().numpy()
    clusters = min(clusters, len(data))
    seed = int(rng.integers(2**31))
    if clusters <= 50:
        model = KMeans(n_clusters=clusters, n_init=1, random_state=seed)
    else:
        model = MiniBatchKMeans(n_clusters=clusters, batch_size=5000, n_init=1, random_state=seed)
    return model.fit_predict(data).astype(np.int64)


def typiclust_positions(
    points: torch.Tensor, labeled_count: int, k: int, rng: np.random.Generator,
    neighbours: int = TYPICLUST_NEIGHBOURS, max_clusters: int = TYPICLUST_MAX_CLUSTERS,
    min_cluster_size: int = TYPICLUST_MIN_CLUSTER_SIZE,
) -> np.ndarray:  # fmt: skip
    """Positions (into the pool, i.e. rows of `points` after the first `labeled_count`) of `k`
    TypiClust picks.

    The labeled and pool points are clustered by k-means into min(labeled + k, `max_clusters`)
    clusters. Each step takes the cluster with the fewest labeled-or-chosen points, ties to the
    largest cluster (then the lowest cluster id), clusters of at most `min_cluster_size` points
    only after all others (the authors drop them; here they keep k reachable), and chooses its
    not-yet-chosen pool point of highest typicality within the cluster (ties: the earlier point).
    """
    labels = seeded_kmeans_labels(points, min(labeled_count + k, max_clusters), rng)
    clusters = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=clusters)
    covered = np.bincount(labels[:labeled_count], minlength=clusters)
    available = np.ones(len(points), dtype=bool)
    available[:labeled_count] = False
    remaining = np.bincount(labels[labeled_count:], minlength=clusters)
    typicality_of: dict[int, np.ndarray] = {}
    members_of: dict[int, np.ndarray] = {}
    chosen = np.empty(k, dtype=np.int64)
    for step in range(k):
        candidates = np.flatnonzero(remaining > 0)
        order = np.lexsort((candidates, -sizes[candidates], covered[candidates], sizes[candidates] <= min_cluster_size))
        cluster = int(candidates[order[0]])
        if cluster not in typicality_of:
            members_of[cluster] = np.flatnonzero(labels == cluster)
            typicality_of[cluster] = typicality(points[members_of[cluster]], neighbours)
        members = members_of[cluster]
        scores = np.where(available[members], typicality_of[cluster], -np.inf)
        position = int(members[np.argmax(scores)])
        chosen[step] = position - labeled_count
        available[position] = False
        remaining[cluster] -= 1
        covered[cluster] += 1
    return chosen


def _check_fraction(owner: str, option: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ConfigError(f"{owner}: {option} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def _bounded_int(owner: str, option: str, value: object) -> int:
    value = check_positive_int(owner, option, value)
    if value > MAX_OPTION:
        raise ConfigError(f"{owner}: {option} must be at most {MAX_OPTION}, got {value}")
    return value


@register_acquisition
class TypiClust(AcquisitionFunction):
    """TypiClust (Hacohen et al., ICML 2022): from each of the largest clusters not yet covered by
    a labeled sample, its most typical point, Typ(x) = (1/K sum_{y in KNN(x)} ||x - y||)^-1, in
    the model's penultimate embedding scaled to unit length (`typiclust_positions`).

    Options: `neighbours` K (20), `max_clusters` (500), `min_cluster_size` (5), as the authors' code;
    `embedding`: a ``.npy`` file of a fixed embedding (one row per training image, e.g. from a
    self-supervised model, as the paper uses) instead of the model's (`load_embedding`).
    """

    name = "typiclust"

    def __init__(
        self, neighbours: int = TYPICLUST_NEIGHBOURS, max_clusters: int = TYPICLUST_MAX_CLUSTERS,
        min_cluster_size: int = TYPICLUST_MIN_CLUSTER_SIZE, embedding: str | None = None,
    ) -> None:  # fmt: skip
        self.fixed = load_embedding(embedding)
        self.neighbours = _bounded_int(self.name, "neighbours", neighbours)
        self.max_clusters = _bounded_int(self.name, "max_clusters", max_clusters)
        self.min_cluster_size = _bounded_int(self.name, "min_cluster_size", min_cluster_size)

    def _select(self, context, pool, k, rng):
        labeled = np.asarray(context.labeled_indices, dtype=np.int64)
        points = unit_embeddings(context, labeled, pool, self.fixed)
        return pool[typiclust_positions(points, len(labeled), k, rng, self.neighbours, self.max_clusters, self.min_cluster_size)]


def purity_radius(points: torch.Tensor, classes: int, purity: float, rng: np.random.Generator) -> float:
    """ProbCover's delta: the largest radius at which at least a `purity` fraction of the balls
    B(x, delta) = {y : ||x - y|| < delta} are pure, i.e. hold points of x's k-means cluster only
    (k-means with `classes` clusters stands in for the unknown labels, as the authors do).

    A ball is pure iff delta <= r(x), r(x) the distance from x to the nearest point of another
    cluster, so with r sorted ascending the answer is r[floor((1 - purity) n)], exactly (the
    authors scan a grid of deltas). When k-means finds one cluster only, every ball is pure: 2,
    the diameter of the unit sphere.
    """
    labels = seeded_kmeans_labels(points, classes, rng)
    other = torch.full((len(points),), float("inf"))
    for cluster in np.unique(labels):
        inside = torch.from_numpy(labels == cluster)
        other[inside] = nearest_center_distances(points[inside], points[~inside])
    radii = np.sort(other.sqrt().double().numpy())
    impure = int(np.floor((1.0 - purity) * len(radii) + 1e-9))  # + 1e-9: (1 - 0.9) * 60 is 5.999...
    radius = float(radii[impure])
    return radius if np.isfinite(radius) else 2.0


def ball_graph(
    points: torch.Tensor, delta: float, max_edges: int = MAX_GRAPH_EDGES, chunk_elements: int = DISTANCE_CHUNK_ELEMENTS
) -> sparse.csr_matrix:
    """The delta-ball graph as a boolean sparse matrix: row x holds every y with ||x - y|| < delta,
    and x itself. Raises `ConfigError` when it would exceed `max_edges` edges."""
    rows, columns, edges = [], [], 0
    norms = (points * points).sum(dim=1)
    for block in _row_blocks(len(points), len(points), chunk_elements):
        # ||a - b||^2 < delta^2  <=>  2 a.b - ||b||^2 > ||a||^2 - delta^2: one product, one comparison
        inside = (2.0 * points[block]) @ points.T - norms[None, :] > (norms[block] - delta * delta)[:, None]
        inside[torch.arange(inside.shape[0]), torch.arange(block.start, block.stop)] = True
        row, column = torch.nonzero(inside, as_tuple=True)
        edges += len(row)
        if edges > max_edges:
            raise ConfigError(
                f"probcover: the delta-ball graph of {len(points)} points at delta={delta:.4g} exceeds "
                f"{max_edges} edges; choose a smaller delta (or a higher purity)"
            )
        rows.append((row + block.start).numpy().astype(np.int32))
        columns.append(column.numpy().astype(np.int32))
    row, column = np.concatenate(rows), np.concatenate(columns)
    return sparse.csr_matrix((np.ones(len(row), dtype=bool), (row, column)), shape=(len(points), len(points)))


def edge_bounded_radius(points: torch.Tensor, max_edges: int, rng: np.random.Generator, sample_rows: int = 500) -> float:
    """A radius whose delta-ball graph has about 0.8 `max_edges` edges at most: the matching
    quantile of the distances from `sample_rows` random points (from `rng`) to all points."""
    rows = points[np.sort(rng.choice(len(points), size=min(sample_rows, len(points)), replace=False))]
    distances = squared_distances(rows, points).flatten().sqrt()
    fraction = min(1.0, 0.8 * max_edges / float(len(points)) ** 2)
    return float(torch.quantile(distances[torch.randperm(len(distances), generator=torch.Generator().manual_seed(int(rng.integers(2**31))))[: 2**24]], fraction))


def probcover_positions(graph: sparse.csr_matrix, labeled_count: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (into the pool, the rows after the first `labeled_count`) of `k` greedy
    max-coverage picks on the delta-ball `graph`.

    The labeled points' balls start covered. Each step picks the pool point whose ball holds the
    most uncovered points (ties: the earlier point) and covers its ball; once everything is
    covered, the rest are drawn uniformly from `rng` (as the authors' code).
    """
    count = graph.shape[0]
    covers = graph.T.tocsr()  # row y: every x whose ball holds y
    covered = np.zeros(count, dtype=bool)
    if labeled_count:
        covered[graph[:labeled_count].indices] = True
    rows = np.repeat(np.arange(count), np.diff(graph.indptr))
    degree = np.bincount(rows, weights=~covered[graph.indices], minlength=count)  # uncovered points per ball
    available = np.ones(count, dtype=bool)
    available[:labeled_count] = False
    chosen = np.empty(k, dtype=np.int64)
    for step in range(k):
        position = int(np.argmax(np.where(available, degree, -1.0)))
        if degree[position] <= 0:
            position = int(rng.choice(np.flatnonzero(available)))
        chosen[step] = position - labeled_count
        available[position] = False
        ball = graph.indices[graph.indptr[position] : graph.indptr[position + 1]]
        newly = ball[~covered[ball]]
        covered[newly] = True
        degree -= np.bincount(covers[newly].indices, minlength=count)
    return chosen


@register_acquisition
class ProbCover(AcquisitionFunction):
    """ProbCover (Yehuda et al., NeurIPS 2022): greedy maximum coverage of the delta-ball graph,
    argmax_{x in pool} |B(x, delta) \\ covered|, B(x, delta) = {y : ||phi(x) - phi(y)|| < delta},
    phi the model's penultimate embedding scaled to unit length; the labeled points' balls count
    as covered (`probcover_positions`).

    Options: `delta` (a number in (0, 2], the sphere's diameter), by default None: the largest
    delta at which a `purity` fraction (0.95, the authors' alpha) of the balls are pure with
    respect to k-means with as many clusters as classes (`purity_radius`), capped so that the
    graph keeps about 0.8 x `MAX_GRAPH_EDGES` (40 million) edges at most (`edge_bounded_radius`:
    on a trained model's embedding, pure balls can hold a whole class, N^2 / classes edges). A
    `delta` given whose graph exceeds the bound is a `ConfigError`. `embedding`: a ``.npy`` file of
    a fixed embedding instead of the model's, as TypiClust's.
    """

    name = "probcover"

    def __init__(self, delta: float | None = None, purity: float = PROBCOVER_PURITY, embedding: str | None = None) -> None:
        self.fixed = load_embedding(embedding)
        if delta is not None and (isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0.0 < delta <= 2.0):
            raise ConfigError(f"probcover: delta must be a number in (0, 2] (unit-length embeddings) or None, got {delta!r}")
        self.delta = None if delta is None else float(delta)
        self.purity = _check_fraction(self.name, "purity", purity)

    def _select(self, context, pool, k, rng):
        labeled = np.asarray(context.labeled_indices, dtype=np.int64)
        points = unit_embeddings(context, labeled, pool, self.fixed)
        delta = self.delta
        if delta is None:
            # pure balls on a trained model's class clusters can hold whole classes: cap the edges
            delta = min(purity_radius(points, context.model.head.out_features, self.purity, rng),
                        edge_bounded_radius(points, MAX_GRAPH_EDGES, rng))  # fmt: skip
        return pool[probcover_positions(ball_graph(points, delta), len(labeled), k, rng)]
