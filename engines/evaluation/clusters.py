"""Maps clustered by similarity: spectral relevance analysis (SpRAy) after Lapuschkin et al. 2019,
"Unmasking Clever Hans predictors and assessing what machines really learn" (Nat. Commun. 10:1096).

SpRAy looks for groups of images on which a model decides by the same pattern: the maps of one
class are downsized (so that small shifts do not matter), compared, and clustered spectrally; a
cluster whose mean map sits away from the object (a watermark, a frame, a background) is a "Clever
Hans" strategy. As in the paper: each map's magnitude is average-pooled to `size` × `size` and
scaled to sum 1; the affinity is the symmetric k-nearest-neighbour graph of those vectors
(Euclidean); the number of clusters is where the eigengap of the graph's normalised Laplacian is
largest (unless given); the labels come from scikit-learn's `SpectralClustering` on that graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

MAX_CLUSTERS = 8
"""The eigengap is searched for 2 … MAX_CLUSTERS clusters (fewer when there are fewer maps)."""


@dataclass
class MapClusters:
    """The clusters of N maps: `labels` (N,) in 0 … k − 1, ordered by cluster size (largest
    first); `means` (k, H, W) each cluster's mean of its members' maps scaled to peak 1;
    `sizes` (k,); `examples` per cluster, member indices nearest its centre first; `eigenvalues`
    the smallest eigenvalues of the normalised graph Laplacian (the eigengap's evidence; empty
    when there were too few maps to cluster)."""

    labels: np.ndarray
    means: np.ndarray
    sizes: np.ndarray
    examples: list[list[int]]
    eigenvalues: np.ndarray

    @property
    def count(self) -> int:
        return len(self.sizes)


def downsample(maps: np.ndarray | torch.Tensor, size: int = 16) -> np.ndarray:
    """Maps `(N, H, W)` as SpRAy compares them: |map| average-pooled to `size` × `size` and scaled
    to sum 1 (an all-zero map stays zero); returns `(N, size · size)` float64."""
    tensor = torch.as_tensor(np.asarray(maps), dtype=torch.float64).abs()
    if tensor.ndim != 3 or min(tensor.shape[-2:]) < 1:
        raise ValueError(f"Maps must be (N, H, W); got shape {tuple(tensor.shape)}.")
    if not torch.isfinite(tensor).all():
        raise ValueError("A map holds a NaN or an infinite value; cluster finite maps only.")
    pooled = F.adaptive_avg_pool2d(tensor[:, None], (size, size))[:, 0].flatten(1)  # (N, size²)
    total = pooled.sum(1, keepdim=True)
    return (pooled / torch.where(total > 0, total, torch.ones_like(total))).numpy()


def affinity(vectors: np.ndarray, neighbours: int) -> np.ndarray:
    """The symmetric k-nearest-neighbour graph `(N, N)`: 1 where either vector is among the
    other's `neighbours` nearest (Euclidean), ½ where only one way round, 0 elsewhere."""
    from sklearn.neighbors import kneighbors_graph

    graph = kneighbors_graph(vectors, n_neighbors=neighbours, mode="connectivity", include_self=False).toarray()
    return (graph + graph.T) / 2


def laplacian_spectrum(graph: np.ndarray, count: int) -> np.ndarray:
    """The `count` smallest eigenvalues of the normalised Laplacian I − D^-½ A D^-½ of `graph`."""
    degree = graph.sum(1)
    scale = np.where(degree > 0, 1 / np.sqrt(np.where(degree > 0, degree, 1)), 0)
    laplacian = np.eye(len(graph)) - scale[:, None] * graph * scale[None, :]
    return np.linalg.eigvalsh(laplacian)[:count]


def eigengap(eigenvalues: np.ndarray, most: int) -> int:
    """The number of clusters k in 2 … `most` after which the spectrum jumps most (λ_{k+1} − λ_k)."""
    gaps = np.diff(eigenvalues[: most + 1])  # gaps[i] = λ_{i+2} − λ_{i+1} in 1-based terms
    return int(np.argmax(gaps[1:most])) + 2 if most >= 2 and len(gaps) > 1 else 1


def cluster_maps(maps: np.ndarray | torch.Tensor, clusters: Optional[int] = None, *, size: int = 16,
                 neighbours: int = 10, examples: int = 4, seed: int = 0) -> MapClusters:
    """Cluster maps `(N, H, W)` of one class by SpRAy (see the module's docstring).

    `clusters`: how many (default: chosen by the eigengap among 2 … `MAX_CLUSTERS`); `size`: the
    side of the downsized maps (default 16 pixels); `neighbours`: the k of the nearest-neighbour
    graph (default 10, fewer when there are fewer maps); `examples`: members listed per cluster,
    nearest the cluster's centre first; `seed`: the random state of the label assignment.
    Fewer than 4 maps are one cluster. Raises ValueError on a bad shape, non-finite values or
    a bad `clusters`."""
    array = np.asarray(maps, dtype=np.float64)
    vectors = downsample(array, size)  # (N, size²)
    count = len(vectors)
    if count == 0:
        raise ValueError("There are no maps to cluster.")
    if clusters is not None and not 1 <= clusters <= count:
        raise ValueError(f"The number of clusters must be between 1 and the number of maps ({count}); got {clusters}.")
    magnitude = np.abs(array)
    peaks = magnitude.reshape(count, -1).max(1)
    scaled = magnitude / np.where(peaks > 0, peaks, 1)[:, None, None]  # (N, H, W), each peak 1
    eigenvalues = np.zeros(0)
    if count < 4 or clusters == 1:
        labels = np.zeros(count, dtype=int)
    else:
        from sklearn.cluster import SpectralClustering

        graph = affinity(vectors, min(neighbours, count - 1))
        most = min(MAX_CLUSTERS, count - 1)
        eigenvalues = laplacian_spectrum(graph, most + 1)
        k = clusters or eigengap(eigenvalues, most)
        labels = SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="cluster_qr",
                                    random_state=seed).fit_predict(graph) if k > 1 else np.zeros(count, dtype=int)
    order = np.argsort(-np.bincount(labels), kind="stable")  # old label → rank by size
    labels = np.argsort(order)[labels]
    sizes = np.bincount(labels)
    means, nearest = [], []
    for label in range(len(sizes)):
        members = np.flatnonzero(labels == label)
        means.append(scaled[members].mean(0))
        centre = vectors[members].mean(0)
        distance = np.linalg.norm(vectors[members] - centre, axis=1)
        nearest.append([int(i) for i in members[np.argsort(distance, kind="stable")][:examples]])
    return MapClusters(labels, np.stack(means).astype(np.float32), sizes, nearest, eigenvalues)
