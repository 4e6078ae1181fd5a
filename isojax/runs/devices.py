"""One leading axis over every device of every process: the layout the sweep engine and the ensemble trainer
share. Host arrays [devices, per_device, ...] become global arrays whose first axis is split over the devices;
every process builds the same host array and feeds its own devices' slices (`jax.distributed`), and results
come back whole to every process."""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

__all__ = ["device_sharding", "to_global", "to_host"]


def device_sharding(axis: str) -> NamedSharding:
    """The first axis (named `axis`) over every device of every process. Auto axes: the programs stay
    sharding-agnostic and XLA partitions them along that axis."""
    devices = jax.devices()
    mesh = jax.make_mesh((len(devices),), (axis,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
    return NamedSharding(mesh, jax.P(axis))


def to_global(tree: object, sharding: NamedSharding) -> object:
    """A pytree of host arrays [devices, ...] (the same in every process) -> global arrays split by `sharding`."""
    def one(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])
    return jax.tree.map(one, tree)


def to_host(tree: object) -> object:
    """A pytree of (possibly sharded, possibly multi-process) arrays -> whole NumPy arrays in every process."""
    if jax.process_count() > 1:
        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree.map(np.asarray, jax.device_get(tree))
