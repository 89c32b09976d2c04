"""Will the run fit? An estimate of a train step's memory from shapes, before compiling.

`check_fits` refuses (one `ConfigError` line, with the figures) a config whose train step
cannot fit the memory of one device, instead of letting XLA ask for terabytes mid-compile
(``distortion.crop_padding=100000`` once asked for 16 TB). The estimate is a lower bound of
what XLA needs, from `jaxconv.summary.summarize`'s layer output shapes on the abstract model
(nothing is allocated or compiled): the parameters, their gradients and the optimizer's
momentum (float32), every layer's output for the per-device batch (kept for the backward
pass) in the compute dtype, and the padded input batch of the random crop. It is compared
with the device's memory limit (``memory_stats()["bytes_limit"]`` on accelerators, physical
memory on CPU); a run refused by it could not have run.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from jaxconv import summary
from jaxconv.training.config import ConfigError

PARAM_COPIES = 4  # Parameters, gradients, momentum, and the updated parameters.


def device_memory_bytes(device: jax.Device | None = None) -> int | None:
    """The memory one device can use: its ``bytes_limit``, or the host's physical memory on
    CPU; None when unknown."""
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - CPU devices may not implement it.
        stats = {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_bytes(model, image_shape: tuple[int, int, int], *, batch_per_device: int,
                   crop_padding: int, compute_bytes: int, num_params: int) -> int:
    """A lower bound of one train step's memory on one device (module docstring).

    Args:
      model: the model (abstract is enough: `nnx.eval_shape`), a `Sequential`.
      image_shape: ``(H, W, C)`` of the input images.
      batch_per_device: examples per device per step.
      crop_padding: pixels the random crop pads on each side.
      compute_bytes: bytes of one value in the compute dtype (4 for float32).
      num_params: parameter count.
    """
    h, w, c = image_shape
    padded = batch_per_device * (h + 2 * crop_padding) * (w + 2 * crop_padding) * c * 4
    rows = summary.summarize(model, image_shape)
    activations = sum(int(np.prod(r.output_shape)) for r in rows)
    return (PARAM_COPIES * 4 * num_params + batch_per_device * activations * compute_bytes
            + padded)


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_fits(estimate: int, available: int | None, *, batch_size: int,
               device_count: int) -> None:
    """Raises `ConfigError` when `estimate` exceeds `available` (None: unknown, no check)."""
    if available is None or estimate <= available:
        return
    raise ConfigError(
        f"this config needs at least {_gib(estimate)} per device for one train step "
        f"(parameters, gradients, momentum, the layers' outputs for {batch_size // device_count}"
        f" examples, the padded input), more than the {_gib(available)} a device has; lower "
        f"config.batch_size ({batch_size}), the image or crop padding sizes, or the model's")
