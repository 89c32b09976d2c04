"""jit on 4 devices and pmap on 4 devices train like 1 device (4 fake CPU devices, conftest)."""

import chex
import jax
import numpy as np
import pytest

from configs import default as default_lib
from jaxconv import training

NUM_STEPS = 6
# Float32 sums over 4 shards instead of 1 change the rounding: after 6 steps at lr 0.05 the
# parameters (|w| < 1) differed by at most 6e-8 and losses by 1e-7 relative (measured). A
# rounding difference that flips a max-pool argmax grows to ~1e-5 (seen on a CI machine in
# tests/reliability/test_determinism.py); a wrong mean (a 4x gradient) moves them by ~1, and
# even a 1 % learning-rate error by ~1e-2. These bounds sit between.
LOSS_RTOL = 1e-4
PARAM_ATOL, PARAM_RTOL = 1e-4, 1e-4


def _run(parallelism: str, devices, data_dir: str):
    config = default_lib.get_config()
    config.data_dir = data_dir
    config.parallelism = parallelism
    config.batch_size = 16
    config.eval_batch_size = 100
    config.num_train_steps = NUM_STEPS
    config.model_kwargs.hidden = (16,)
    chex.clear_trace_counter()
    job = training.setup(config, devices=devices, wrap=lambda f: chex.assert_max_traces(f, n=1))
    state = job.par.put_state(job.state)
    metrics = []
    for _ in range(NUM_STEPS):
        state, m = job.train_fn(state, job.par.put_batch(next(job.train_it)))
        metrics.append(m)
    evaluation = training.evaluate(job, state)
    evaluation = training.evaluate(job, state)  # A second pass: no retrace.
    losses = [float(m["loss"]) for m in job.par.to_host(metrics)]
    params = jax.device_get(job.par.host_state(state).params)
    return losses, params, evaluation, job.par.device_count


@pytest.mark.slow
def test_jit_and_pmap_on_4_devices_match_one_device(digits_dir):
    assert jax.device_count() == 4, "tests/conftest.py should give 4 CPU devices"
    ref_losses, ref_params, ref_eval, n = _run("jit", jax.devices()[:1], digits_dir)
    assert n == 1
    for mode in ("jit", "pmap"):
        losses, params, evaluation, n = _run(mode, None, digits_dir)
        assert n == 4
        np.testing.assert_allclose(losses, ref_losses, rtol=LOSS_RTOL, err_msg=mode)
        jax.tree.map(
            lambda a, b, mode=mode: np.testing.assert_allclose(
                a, b, atol=PARAM_ATOL, rtol=PARAM_RTOL, err_msg=mode),
            params, ref_params,
        )
        assert evaluation["count"] == ref_eval["count"] == 297
        assert evaluation["accuracy"] == pytest.approx(ref_eval["accuracy"], abs=1 / 297)
        np.testing.assert_allclose(evaluation["loss"], ref_eval["loss"], rtol=1e-4)
    assert ref_losses[-1] < ref_losses[0]  # It trains.
