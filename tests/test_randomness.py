"""Per-step randomness of the train step: dropout masks and distortions differ from step to step
and from example to example, are reproducible, and do not depend on the device count.

Every check runs the production step (`jaxconv.training.job.build_step_fns` over
`jaxconv.training.steps.train_step`) on a tiny StageNet (8x8x1, one 4-channel stage, a
16-unit hidden layer) with a zero learning rate: the parameters never move, so two losses on
the same batch differ only through the step's random draws. Two draws of a float32 loss that
come out bit-equal by chance are out of reach (a dropout mask has 16 bits per example, a
distortion three continuous parameters). What the docs promise across devices
(`jaxconv.training.steps`, `tests/reliability/test_determinism.py`): under jit the masks and
distortions are those of one device (threefry is partitionable); under pmap distortions equal
one device's (keys offset by the device's position in the global batch) while dropout draws
per-device masks, which must then differ between devices. 4 fake CPU devices (conftest).
"""

import functools

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from jaxconv import data
from jaxconv.models import StageNet
from jaxconv.training import parallel
from jaxconv.training.job import build_step_fns
from jaxconv.training.state import create_train_state, root_keys, split_model

INFO = data.DatasetInfo("digits", 10, (8, 8, 1), 8, 8, tuple("0123456789"), "train", "test",
                        mean=(0.3,), std=(0.4,))
WARP = data.Distortion(rotation_degrees=15.0, translate=1.0, scale=(0.9, 1.1))
NO_WARP = data.Distortion()
# Rounding only: float32 means over 4 shards vs 1 differ by ~1e-7 relative (measured 6e-8 for
# jit, 1.2e-7 for pmap); a different mask or distortion moves the loss by >1e-3 here.
DEVICE_RTOL = 1e-5


IMAGES = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 1), np.uint8)


def _image_batch(n, *, same=False):
    """The first `n` of `IMAGES` with labels 0..n-1, or (`same`) `n` copies of the first with
    label 0: the batch ``_image_batch(1)`` repeated."""
    if same:
        return {"image": np.repeat(IMAGES[:1], n, axis=0), "label": np.zeros(n, np.int32)}
    return {"image": IMAGES[:n], "label": np.arange(n, dtype=np.int32) % 10}


@functools.cache
def _compiled(dropout, distortion, mode, devices):
    """`(par, train_fn, params, tx)` of the tiny model (seed 0's init), learning rate 0; one
    compiled step per setting for the whole module."""
    params_key, dropout_key, _ = root_keys(0)
    model = StageNet(10, input_shape=(8, 8, 1), features=(4,), lcn_kernel_size=None,
                     hidden=(16,), dropout=dropout,
                     rngs=nnx.Rngs(params=params_key, dropout=dropout_key))
    model_def, params = split_model(model)
    tx = optax.sgd(0.0)
    par = parallel.create(mode, jax.devices()[:devices])
    train_fn, _ = build_step_fns(par, model_def, tx, optax.constant_schedule(0.0), distortion,
                                 INFO)
    return par, train_fn, params, tx


def _setup(*, dropout, distortion, mode="jit", devices=1, seed=0):
    """`(par, train_fn, host_state)` at step 0; `seed` gives the state's step key (the
    parameters are seed 0's whatever it is)."""
    par, train_fn, params, tx = _compiled(dropout, distortion, mode, devices)
    return par, train_fn, create_train_state(params, tx, root_keys(seed)[2])


def _losses(setup, batch, steps):
    """The train loss of `steps` consecutive steps on the same `batch`, as float32 numbers."""
    par, train_fn, state = setup
    state, out = par.put_state(state), []
    for _ in range(steps):
        state, metrics = train_fn(state, par.put_batch(batch))
        out.append(np.float32(par.to_host(metrics)["loss"]))
    return out


def test_dropout_masks_change_every_step_and_repeat_for_the_same_step():
    setup = _setup(dropout=0.5, distortion=NO_WARP)
    first = _losses(setup, _image_batch(4), 3)
    assert len(set(first)) == 3, f"same dropout mask at consecutive steps: losses {first}"
    assert _losses(setup, _image_batch(4), 3) == first  # Same seed and steps: same masks.
    # Another seed's step key, same parameters: other masks (the state's key is used).
    assert _losses(_setup(dropout=0.5, distortion=NO_WARP, seed=1), _image_batch(4), 1)[0] \
        != first[0]


def test_dropout_masks_differ_between_examples():
    """4 copies of one image give a mean loss unlike the loss of that image alone, which would
    be equal if every example drew the first example's mask."""
    setup = _setup(dropout=0.5, distortion=NO_WARP)
    (four,) = _losses(setup, _image_batch(4, same=True), 1)
    (one,) = _losses(setup, _image_batch(1), 1)
    assert four != pytest.approx(one, rel=1e-4), "every example drew the same dropout mask"


def test_distortions_change_every_step_differ_between_examples_and_repeat():
    setup = _setup(dropout=0.0, distortion=WARP)
    copies = _image_batch(8, same=True)
    losses = _losses(setup, copies, 2)
    assert losses[0] != losses[1], "same distortion at consecutive steps"
    assert _losses(setup, copies, 2) == losses  # Same seed and steps: same distortions.
    assert _losses(_setup(dropout=0.0, distortion=WARP, seed=1), copies, 1)[0] != losses[0]
    (one,) = _losses(setup, _image_batch(1), 1)
    assert losses[0] != pytest.approx(one, rel=1e-4), "every example got the same distortion"


def test_jit_on_4_devices_draws_the_masks_of_1_device():
    """Under jit the global batch gets the single-device masks (partitionable threefry)."""
    one = _losses(_setup(dropout=0.5, distortion=NO_WARP), _image_batch(4), 2)
    four = _losses(_setup(dropout=0.5, distortion=NO_WARP, devices=4), _image_batch(4), 2)
    np.testing.assert_allclose(four, one, rtol=DEVICE_RTOL)


def test_pmap_distorts_as_1_device_and_draws_per_device_dropout():
    batch = _image_batch(8)  # 2 per device: device k's examples are 2k and 2k + 1.
    one = _losses(_setup(dropout=0.0, distortion=WARP), batch, 2)
    pmap = _losses(_setup(dropout=0.0, distortion=WARP, mode="pmap", devices=4), batch, 2)
    np.testing.assert_allclose(pmap, one, rtol=DEVICE_RTOL)
    # One copy of an image per device: the same mask on every device would give the loss of
    # the image alone (device 0's key is the single-device key).
    (four,) = _losses(_setup(dropout=0.5, distortion=NO_WARP, mode="pmap", devices=4),
                      _image_batch(4, same=True), 1)
    (alone,) = _losses(_setup(dropout=0.5, distortion=NO_WARP), _image_batch(1), 1)
    assert four != pytest.approx(alone, rel=1e-4), "every device drew the same dropout mask"
