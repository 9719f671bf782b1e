"""Spectral relevance analysis (SpRAy, Lapuschkin et al. 2019): maps that are obviously in different
groups are separated, the eigengap finds how many groups there are, and each cluster's mean map
and examples come from its own members."""

from __future__ import annotations

import numpy as np
import pytest

from engines import cluster_maps
from engines.evaluation.clusters import downsample, eigengap


def blobs(count: int, centre: tuple[int, int], rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """`count` maps `(count, size, size)`: a Gaussian blob near `centre` (jittered by a pixel or two) plus noise."""
    rows, cols = np.mgrid[:size, :size]
    maps = []
    for _ in range(count):
        r, c = np.array(centre) + rng.integers(-2, 3, 2)
        maps.append(np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / 18.0) + 0.02 * rng.random((size, size)))
    return np.stack(maps)


@pytest.fixture
def two_groups() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    maps = np.concatenate([blobs(12, (8, 8), rng), blobs(7, (24, 24), rng)])
    order = rng.permutation(len(maps))
    return maps[order], (order >= 12).astype(int)  # the maps shuffled, and which group each is from


def test_two_obviously_different_groups_of_maps_are_separated_and_counted_by_the_eigengap(two_groups):
    maps, group = two_groups
    result = cluster_maps(maps)
    assert result.count == 2
    assert len(set(zip(result.labels, group))) == 2  # each cluster is exactly one group
    assert list(result.sizes) == [12, 7]  # largest first
    gaps = np.diff(result.eigenvalues)
    assert result.eigenvalues[0] == pytest.approx(0, abs=1e-9) and gaps[1] == gaps[1:].max()  # the jump after λ2


def test_each_clusters_mean_map_peaks_where_its_members_do_and_its_examples_are_members(two_groups):
    maps, _ = two_groups
    result = cluster_maps(maps, examples=3)
    for label, centre in enumerate([(8, 8), (24, 24)]):
        peak = np.unravel_index(np.argmax(result.means[label]), result.means[label].shape)
        assert np.abs(np.array(peak) - centre).max() <= 2
        assert len(result.examples[label]) == 3 and all(result.labels[i] == label for i in result.examples[label])
    assert result.means.shape == (2, 32, 32) and result.means.max() <= 1 + 1e-6


def test_the_sign_of_a_map_does_not_matter_only_its_magnitude(two_groups):
    maps, _ = two_groups
    flipped = maps.copy()
    flipped[::2] *= -1
    assert np.array_equal(cluster_maps(flipped).labels, cluster_maps(maps).labels)


def test_a_given_number_of_clusters_is_used_and_the_result_is_deterministic(two_groups):
    maps, _ = two_groups
    three = cluster_maps(maps, clusters=3)
    assert three.count == 3 and sorted(set(three.labels)) == [0, 1, 2]
    assert np.array_equal(three.labels, cluster_maps(maps, clusters=3).labels)
    assert cluster_maps(maps, clusters=1).count == 1


def test_too_few_maps_are_one_cluster_and_bad_input_is_refused():
    rng = np.random.default_rng(1)
    few = cluster_maps(blobs(3, (8, 8), rng))
    assert few.count == 1 and list(few.labels) == [0, 0, 0] and few.eigenvalues.size == 0
    with pytest.raises(ValueError, match="between 1"):
        cluster_maps(blobs(5, (8, 8), rng), clusters=6)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        cluster_maps(np.zeros((4, 8)))
    with pytest.raises(ValueError, match="NaN"):
        cluster_maps(np.full((4, 8, 8), np.nan))


def test_downsampled_maps_sum_to_one_and_average_the_pixels_they_cover():
    maps = np.zeros((2, 8, 8))
    maps[0, :4, :4] = -2.0  # magnitude, top-left quarter
    vectors = downsample(maps, size=2)
    assert np.allclose(vectors[0], [1, 0, 0, 0]) and np.allclose(vectors[1], 0)


def test_the_eigengap_picks_the_number_before_the_largest_jump():
    assert eigengap(np.array([0, 0, 0, 0.9, 0.95]), 4) == 3
    assert eigengap(np.array([0, 0.01, 0.5, 0.6]), 3) == 2
