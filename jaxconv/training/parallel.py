"""Data parallelism: the same pure steps under ``jax.jit`` + shardings or under ``jax.pmap``.

- `JitParallel` (``parallelism="jit"``, the default): one `Mesh` over every device of every
  process with a ``"data"`` axis; batches are global arrays sharded along it (``P("data")``),
  the state is replicated (``P()``), and XLA inserts the gradient all-reduce. The same code
  runs on 1 CPU, 8 GPUs or a TPU slice.
- `PmapParallel` (``parallelism="pmap"``): the step runs per device under ``jax.pmap`` with
  an explicit ``lax.pmean`` of the gradients; the state carries a leading device axis.

Both give each process the same interface: `put_state` / `host_state` move the state between
the canonical (checkpointed) layout and the device layout, `put_batch` turns this process's
local uint8 batch into the step's input, `compile_train` / `compile_eval` jit once (donating
the state), `to_host` fetches metrics. Multi-host: start JAX's processes first
(`jaxconv.training.distributed`); each process feeds only its own shard of every global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

PMAP_AXIS = "batch"


def _host(x: Any) -> np.ndarray:
    return np.asarray(jax.device_get(x))


class JitParallel:
    """``jax.jit`` over a one-axis ``"data"`` mesh (module docstring).

    Args:
      devices: the mesh's devices; None: every device of every process.
    """

    name = "jit"
    axis_name = None

    def __init__(self, devices: list[jax.Device] | None = None):
        devices = jax.devices() if devices is None else list(devices)
        self.device_count = len(devices)
        # An Auto-typed mesh (jax.make_mesh makes Explicit axes): shardings steer jit only.
        self.mesh = Mesh(np.asarray(devices), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.data_sharding = NamedSharding(self.mesh, P("data"))

    def put_state(self, state: Any) -> Any:
        """Replicates `state` (host arrays, local or already global jax arrays) on the mesh."""

        def put(x):
            if isinstance(x, jax.Array) and not x.is_fully_addressable:
                return jax.device_put(x, self.replicated)
            return jax.make_array_from_process_local_data(self.replicated, _host(x))

        return jax.tree.map(put, state)

    def host_state(self, state: Any) -> Any:
        """The canonical (checkpointed) layout: the replicated global arrays themselves."""
        return state

    def put_batch(self, batch: dict[str, np.ndarray], *,
                  batch_axis: int = 0) -> dict[str, jax.Array]:
        """This process's local rows -> global arrays sharded along ``"data"``.

        Args:
          batch: this process's rows of each array.
          batch_axis: the axis of the rows (1 for the ``(seeds, batch, ...)`` batches of
            several seeds, `jaxconv.training.replicas`: the seed axis is not sharded).
        """
        sharding = (self.data_sharding if batch_axis == 0 else
                    NamedSharding(self.mesh, P(*[None] * batch_axis, "data")))
        return {k: jax.make_array_from_process_local_data(sharding, v)
                for k, v in batch.items()}

    def compile_train(self, fn: Callable) -> Callable:
        """``jax.jit(fn)`` donating the state; outputs replicated."""
        return jax.jit(fn, donate_argnums=0, out_shardings=self.replicated)

    def compile_eval(self, fn: Callable) -> Callable:
        """``jax.jit(fn)``; outputs replicated."""
        return jax.jit(fn, out_shardings=self.replicated)

    def to_host(self, tree: Any) -> Any:
        """Fetches replicated outputs (metrics) as numpy."""
        return jax.device_get(tree)


def _first_replica(x: jax.Array) -> np.ndarray:
    """This process's first replica of an array with a leading device axis, as numpy."""
    return np.asarray(x.addressable_data(0))[0, ...]  # [0, ...]: 0-d arrays, not scalars.


class PmapParallel:
    """``jax.pmap`` over this process's devices, ``lax.pmean`` across all (module docstring).

    Args:
      devices: this process's devices to use (single process only); None: all local devices
        (and, multi-process, the devices of every process).
    """

    name = "pmap"
    axis_name = PMAP_AXIS

    def __init__(self, devices: list[jax.Device] | None = None):
        self._pmap_devices = None if devices is None else list(devices)
        self.local_devices = jax.local_devices() if devices is None else list(devices)
        self.n = len(self.local_devices)
        self.device_count = self.n * jax.process_count()
        mesh = Mesh(np.asarray(self.local_devices), (PMAP_AXIS,))
        self.sharding = NamedSharding(mesh, P(PMAP_AXIS))

    def put_state(self, state: Any) -> Any:
        """Copies `state` onto each local device (a leading axis of size local devices)."""

        def put(x):
            x = _host(x)
            return jax.device_put(np.broadcast_to(x[None], (self.n,) + x.shape), self.sharding)

        return jax.tree.map(put, state)

    def host_state(self, state: Any) -> Any:
        """The canonical (checkpointed) layout: numpy copies of this process's first replica."""
        return jax.tree.map(_first_replica, state)

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """``(local_batch, ...)`` -> ``(local_devices, local_batch // local_devices, ...)``."""
        return {
            k: jax.device_put(v.reshape((self.n, -1) + v.shape[1:]), self.sharding)
            for k, v in batch.items()
        }

    def compile_train(self, fn: Callable) -> Callable:
        """``jax.pmap(fn)`` donating the state."""
        return jax.pmap(fn, axis_name=PMAP_AXIS, donate_argnums=0, devices=self._pmap_devices)

    def compile_eval(self, fn: Callable) -> Callable:
        """``jax.pmap(fn)``."""
        return jax.pmap(fn, axis_name=PMAP_AXIS, devices=self._pmap_devices)

    def to_host(self, tree: Any) -> Any:
        """Fetches the first local replica of pmean-ed / psum-ed outputs as numpy."""
        return jax.tree.map(_first_replica, tree)


# config.parallelism -> strategy.
PARALLELISM: dict[str, type[JitParallel] | type[PmapParallel]] = {
    "jit": JitParallel,
    "pmap": PmapParallel,
}


def create(parallelism: str, devices: list[jax.Device] | None = None):
    """The strategy named by ``config.parallelism`` (`PARALLELISM`).

    Args:
      parallelism: "jit" or "pmap".
      devices: devices to use (pmap: this process's); None: all.

    Raises:
      ValueError: unknown name.
    """
    if parallelism not in PARALLELISM:
        raise ValueError(f"unknown parallelism {parallelism!r}; valid: {list(PARALLELISM)}")
    return PARALLELISM[parallelism](devices)
