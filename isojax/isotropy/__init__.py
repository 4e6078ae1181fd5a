"""Isotropy measures of point clouds and LM heads (the project's theory notes, T4, T6 and "where the measures
come from").

Every measure takes one cloud `x: [n, d]` (or a head `phi: [V, d]`) and is `vmap`-able over a batch. For your
own arrays, `measure(x)` and `measure_layers(hidden)` validate the input and return plain Python numbers.
Degenerate inputs (zero rows, a point mass, NaN, half precision, extreme scales, subnormals, d = 1, arrays too
large) have documented values or raise ValueError: see `isojax.isotropy._cloud`. `measure(x, uncertainty=True)`
adds a bootstrap interval, the isotropic null and the null-relative value of each measure
(`isojax.isotropy.uncertainty`); `isojax.isotropy.transforms` holds post-hoc transforms (centring,
all-but-the-top, whitening).
"""

from __future__ import annotations

from isojax.isotropy import transforms
from isojax.isotropy.api import MEASURES, all_measures, layer_summary, measure, measure_layers
from isojax.isotropy.clustered import ClusteredCosine, clustered_cosine
from isojax.isotropy.cosine import local_intrinsic_dimension, mean_cosine, pairwise_distances
from isojax.isotropy.spectrum import (
                                      after,
                                      covariance_spectrum,
                                      d_80,
                                      d_80_from_spectrum,
                                      isoscore,
                                      isoscore_from_covariance,
                                      isoscore_from_spectrum,
                                      isoscore_star,
                                      log_partition_along,
                                      partition_isotropy,
                                      principal_directions,
                                      top3_variance_ratio,
)
from isojax.isotropy.uncertainty import Uncertainty, relative_to_null

__all__ = ["MEASURES", "ClusteredCosine", "after", "all_measures", "clustered_cosine", "covariance_spectrum",
           "d_80", "d_80_from_spectrum", "isoscore", "isoscore_from_covariance", "isoscore_from_spectrum",
           "isoscore_star", "layer_summary",
           "local_intrinsic_dimension", "log_partition_along", "mean_cosine", "measure", "measure_layers",
           "pairwise_distances", "partition_isotropy", "principal_directions", "relative_to_null",
           "top3_variance_ratio", "transforms", "Uncertainty"]
