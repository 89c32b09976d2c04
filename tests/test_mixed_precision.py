"""config.compute_dtype=bfloat16 end to end: trainer, checkpoints, resume, Predictor, pretrained.

The bfloat16 ops and models themselves are tested in test_functional_bfloat16.py and
test_models_dtype.py; here the switch is followed from the config to what a run leaves.
"""

import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from safetensors.numpy import save_file

from configs import default as default_lib
from jaxconv import data, pretrained, runs, training
from jaxconv.predict import Predictor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BF16, F32 = jnp.dtype(jnp.bfloat16), np.dtype(np.float32)


def _compute_dtypes(model) -> set:
    """The `dtype` of every layer that has one (convs, dense layers, pools, norms)."""
    return {jnp.dtype(layer.dtype) if layer.dtype is not None else None
            for _, layer in model.named_leaves() if hasattr(layer, "dtype")}


def _float_dtypes(tree) -> set:
    return {np.asarray(x).dtype for x in jax.tree.leaves(tree)
            if jnp.issubdtype(np.asarray(x).dtype, jnp.floating)}


def _predictor_model(predictor):
    return nnx.merge(predictor.graphdef, predictor.state)


# ------------------------------------------------------------- the default config, bfloat16


@pytest.fixture(scope="module")
def bf16_run(digits_dir, tmp_path_factory):
    """``python train.py --config configs/default.py --config.compute_dtype=bfloat16``, whole.

    Run as a user runs it: one CPU device and train.py's own XLA flags (the fake devices of
    conftest.py are not passed on). Returns ``(workdir, wall seconds)``.
    """
    workdir = tmp_path_factory.mktemp("bf16_default")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    command = [sys.executable, "train.py", "--config", "configs/default.py",
               "--workdir", str(workdir), f"--config.data_dir={digits_dir}",
               "--config.compute_dtype=bfloat16", "--config.progress_bar=False",
               "--config.write_plots=False"]
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return str(workdir), time.perf_counter() - t0


@pytest.mark.slow
def test_bf16_default_config_reaches_the_accuracy(bf16_run):
    workdir, seconds = bf16_run
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["step"] == 600 and metrics["test_examples"] == 297
    assert metrics["test_accuracy"] >= 0.975, (metrics["test_accuracy"], seconds)
    model_kwargs = runs.read_run_info(workdir).model_kwargs
    assert (model_kwargs["dtype"], model_kwargs["param_dtype"]) == ("bfloat16", "float32")


@pytest.mark.slow
def test_bf16_checkpoint_holds_float32_state(bf16_run):
    """Parameters and the optimizer's momentum are float32 master copies."""
    workdir, _ = bf16_run
    newest = max(glob.glob(os.path.join(workdir, "checkpoints", "*", "state")),
                 key=lambda p: int(p.split(os.sep)[-2]))
    state = ocp.StandardCheckpointer().restore(newest)
    assert _float_dtypes(state["params"]) == {F32}
    assert _float_dtypes(state["opt_state"]) == {F32}
    assert _float_dtypes(runs.restore_params(workdir)) == {F32}


@pytest.mark.slow
def test_predictor_uses_the_runs_compute_dtype(bf16_run, digits_dir):
    """bfloat16 by default (and the run's test accuracy); float32 on request, close to it."""
    workdir, _ = bf16_run
    (batch,) = data.eval_batches("digits", digits_dir, batch_size=297)
    images, labels = batch["image"], batch["label"]
    with open(os.path.join(workdir, "metrics.json")) as f:
        correct = round(json.load(f)["test_accuracy"] * len(labels))

    bf16 = Predictor.from_checkpoint(workdir, batch_size=100)
    assert _compute_dtypes(_predictor_model(bf16)) == {BF16}
    assert _float_dtypes(nnx.state(_predictor_model(bf16), nnx.Param)) == {F32}
    p16 = bf16.probabilities(images)
    assert p16.dtype == np.float32
    np.testing.assert_allclose(p16.sum(-1), 1.0, rtol=1e-5)
    # The eval step ran the same bfloat16 model on other batch shapes: a tie may break apart.
    assert abs(int(np.sum(p16.argmax(-1) == labels)) - correct) <= 1

    f32 = Predictor.from_checkpoint(workdir, batch_size=100, dtype="float32")
    assert _compute_dtypes(_predictor_model(f32)) == {F32}
    p32 = f32.probabilities(images)
    assert np.abs(p32 - p16).max() < 0.05
    assert np.mean(p32.argmax(-1) == p16.argmax(-1)) >= 0.99


# ------------------------------------------------------------------ the trainer, in process


def _config(data_dir, compute_dtype="bfloat16", num_train_steps=2):
    c = default_lib.get_config()
    c.data_dir, c.progress_bar, c.write_plots = data_dir, False, False
    c.compute_dtype = compute_dtype
    c.batch_size, c.eval_batch_size, c.num_train_steps = 20, 100, num_train_steps
    return c


@pytest.mark.slow
@pytest.mark.parametrize("compute_dtype", ["bfloat16", "float32"])
def test_train_step_computes_in_the_compute_dtype(digits_dir, compute_dtype):
    """The model's matmuls/convs take bfloat16 operands; state and metrics stay float32."""
    job = training.setup(_config(digits_dir, compute_dtype))
    state, batch = job.par.put_state(job.state), job.par.put_batch(next(job.train_it))
    text = job.train_fn.lower(state, batch).as_text()
    ops = [line for line in text.splitlines()
           if re.search(r"stablehlo\.(convolution|dot_general)", line)]
    # The first conv's kernel (3x3, 1 -> 16) and the classifier's (128 -> 10).
    kernels_in_bf16 = [any(f"tensor<{k}xbf16>" in op for op in ops)
                       for k in ("3x3x1x16", "128x10")]
    if compute_dtype == "bfloat16":
        assert kernels_in_bf16 == [True, True]
    else:
        assert "bf16" not in text
    new_state, metrics = jax.eval_shape(job.train_fn, state, batch)
    assert _float_dtypes(jax.tree.map(lambda s: np.zeros((), s.dtype), new_state)) == {F32}
    assert {m.dtype for m in metrics.values()} == {F32}


def _leaves(state):
    return jax.tree_util.tree_leaves_with_path(jax.device_get(state))


@pytest.mark.slow
def test_bf16_resume_is_bit_exact(digits_dir, tmp_path):
    """2N steps straight == N steps, then resumed to 2N (dropout and distortions on)."""
    n = 3

    def config(steps):
        c = _config(digits_dir, "bfloat16", steps)
        c.checkpoint_every_steps, c.log_every_steps = n, 1
        c.model_kwargs.hidden, c.model_kwargs.dropout = (16,), 0.5
        # A schedule that does not depend on num_train_steps (cosine's horizon would); the
        # rate drops at step 3 (epoch 0.04 of 75 steps), at the resume point.
        c.optimizer.schedule, c.optimizer.decay_epochs = "step", (0.04,)
        return c

    straight = training.train_and_evaluate(config(2 * n), tmp_path / "a")
    half = training.train_and_evaluate(config(n), tmp_path / "b")
    resumed = training.train_and_evaluate(config(2 * n), tmp_path / "b")
    assert int(half.step) == n and int(resumed.step) == int(straight.step) == 2 * n
    for (path, a), (_, b) in zip(_leaves(straight), _leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    assert not np.array_equal(jax.device_get(half.params["output"]["kernel"]),
                              jax.device_get(resumed.params["output"]["kernel"]))
    assert _float_dtypes(resumed.params) == _float_dtypes(resumed.opt_state) == {F32}


# ------------------------------------------------------------------ pretrained, from torch

TINY = dict(channels=(2, 2, 3, 3, 3), hidden=4)


def _tiny_vgg11_file(path, classes=6):
    """A random VGG-11 state dict in torchvision's keys and layouts, as .safetensors."""
    rng = np.random.default_rng(0)
    shapes, cin = {}, 3
    for index, cout in zip([0, 3, 6, 8, 11, 13, 16, 18], [2, 2, 3, 3, 3, 3, 3, 3]):
        shapes[f"features.{index}"], cin = (cout, cin, 3, 3), cout
    shapes.update({"classifier.0": (4, cin * 49), "classifier.3": (4, 4),
                   "classifier.6": (classes, 4)})
    state = {}
    for prefix, shape in shapes.items():
        state[f"{prefix}.weight"] = rng.standard_normal(shape).astype(np.float32)
        state[f"{prefix}.bias"] = rng.standard_normal(shape[0]).astype(np.float32)
    save_file(state, path)
    return path


@pytest.mark.slow
def test_from_torch_and_load_accept_the_dtype(tmp_path):
    path = _tiny_vgg11_file(tmp_path / "vgg.safetensors")
    f32 = pretrained.from_torch("vgg11", path, 6, **TINY)
    bf16 = pretrained.from_torch("vgg11", path, 6, dtype="bfloat16", **TINY)
    assert _compute_dtypes(f32) == {None} and _compute_dtypes(bf16) == {BF16}
    f32_params = nnx.to_pure_dict(nnx.state(f32, nnx.Param))
    bf16_params = nnx.to_pure_dict(nnx.state(bf16, nnx.Param))
    assert _float_dtypes(bf16_params) == {F32}
    jax.tree.map(np.testing.assert_array_equal, f32_params, bf16_params)
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3), minval=-1.0)
    want, got = f32(x), bf16(x)
    assert got.dtype == jnp.float32
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(got, want, atol=0.05 * scale, rtol=0)

    loaded = pretrained.load("vgg11", tmp_path / "cache", url=path.as_uri(), progress=False,
                             sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                             num_classes=6, dtype="bfloat16", **TINY)
    assert _compute_dtypes(loaded) == {BF16}


def test_predictor_from_torch_accepts_the_dtype(tmp_path):
    path = _tiny_vgg11_file(tmp_path / "vgg.safetensors")
    names = [str(i) for i in range(6)]
    f32 = Predictor.from_torch("vgg11", path, class_names=names, batch_size=2, **TINY)
    bf16 = Predictor.from_torch("vgg11", path, class_names=names, batch_size=2,
                                dtype="bfloat16", **TINY)
    assert _compute_dtypes(_predictor_model(bf16)) == {BF16}
    images = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    p32, p16 = f32.probabilities(images), bf16.probabilities(images)
    assert p16.dtype == np.float32
    np.testing.assert_allclose(p16, p32, atol=0.05, rtol=0)
