"""jaxconv.training.steps: a train step's and an eval step's numbers, recomputed here by hand.

A tiny StageNet (no dropout) and undistorted images, so that one train step is plain SGD on
the batch: its loss, accuracy, logged learning rate, gradient and parameter norms, and the
updated parameters are computed below from the model's logits with NumPy and `jax.grad`
(the normalization written out as ``(x / 255 - mean) / std``). The eval step's sums skip the
masked (padded) rows.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxconv import data
from jaxconv.models import StageNet
from jaxconv.training import parallel
from jaxconv.training.job import build_step_fns
from jaxconv.training.state import create_train_state, split_model
from jaxconv.training.steps import summarize_eval

MEAN, STD = (0.3,), (0.4,)
INFO = data.DatasetInfo("digits", 10, (8, 8, 1), 8, 8, tuple("0123456789"), "train", "test",
                        mean=MEAN, std=STD)
STEP = 3  # Not 0: the logged rate must be the schedule at the state's step, not its neighbour.
# float32 forward and backward against the same model's float32 logits: ~1e-7 relative.
RTOL = 1e-5


def schedule(step):
    return 0.1 / (1.0 + step)


@pytest.fixture(scope="module")
def setup():
    model = nnx.jit(lambda: StageNet(10, input_shape=(8, 8, 1), features=(4,),
                                     lcn_kernel_size=(3,), hidden=(8,),
                                     rngs=nnx.Rngs(params=0, dropout=1)))()
    model_def, params = split_model(model)
    tx = optax.sgd(schedule)
    train_fn, eval_fn = build_step_fns(parallel.create("jit", jax.devices()[:1]), model_def, tx,
                                       schedule, data.Distortion(), INFO)
    state = create_train_state(params, tx, jax.random.key(0))
    # At step STEP, with the optimizer's own step count (its schedule's) there too.
    state = jax.tree.map(lambda x: jnp.int32(STEP) if x.dtype == jnp.int32 else x, state)
    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 1), np.uint8)

    @jax.jit
    def forward(p):
        return model_def.apply(p, (images.astype(np.float32) / 255 - MEAN[0]) / STD[0],
                               train=False)

    logits = np.asarray(forward(params), np.float64)
    # Labels: the first half predicted right, the second half wrong.
    pred = logits.argmax(-1)
    labels = np.concatenate([pred[:4], (pred[4:] + 1) % 10]).astype(np.int32)
    return dict(model_def=model_def, params=params, state=state, images=images, labels=labels,
                logits=logits, train_fn=train_fn, eval_fn=eval_fn, forward=forward)


def _cross_entropy(logits, labels):
    m = logits.max(-1, keepdims=True)
    log_z = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[:, 0]
    return log_z - logits[np.arange(len(labels)), labels]


def _norm(tree):
    return float(np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2)
                             for x in jax.tree.leaves(tree))))


def test_train_step_is_one_sgd_step_with_its_metrics(setup):
    s = setup
    state = jax.tree.map(jnp.array, s["state"])  # A copy: the step donates its state.
    new_state, metrics = s["train_fn"](state, {"image": s["images"], "label": s["labels"]})
    metrics = jax.device_get(metrics)

    def loss(p):
        logits = s["forward"](p)
        return optax.softmax_cross_entropy_with_integer_labels(logits, s["labels"]).mean()

    grads = jax.jit(jax.grad(loss))(s["params"])
    assert float(metrics["loss"]) == pytest.approx(
        _cross_entropy(s["logits"], s["labels"]).mean(), rel=RTOL)
    assert float(metrics["accuracy"]) == 0.5
    assert float(metrics["learning_rate"]) == pytest.approx(schedule(STEP), rel=1e-7)
    assert float(metrics["grad_norm"]) == pytest.approx(_norm(grads), rel=RTOL)
    want = jax.tree.map(lambda p, g: np.asarray(p) - schedule(STEP) * np.asarray(g),
                        s["params"], grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-7),
                 jax.device_get(new_state.params), want)
    assert float(metrics["param_norm"]) == pytest.approx(_norm(want), rel=RTOL)
    assert int(new_state.step) == STEP + 1
    np.testing.assert_array_equal(new_state.rng, s["state"].rng)  # The run's key is kept.


def test_eval_step_sums_the_unmasked_rows(setup):
    s = setup
    mask = np.array([True] * 6 + [False] * 2)
    batch = {"image": s["images"], "label": s["labels"], "mask": mask}
    metrics = jax.device_get(s["eval_fn"](s["state"], batch))
    ce = _cross_entropy(s["logits"], s["labels"])
    assert float(metrics["loss_sum"]) == pytest.approx(ce[:6].sum(), rel=RTOL)
    assert float(metrics["correct"]) == 4.0  # Rows 0-3 right, 4-5 wrong, 6-7 masked.
    assert float(metrics["count"]) == 6.0


def test_summarize_eval_divides_by_the_count():
    assert summarize_eval({"loss_sum": 6.0, "correct": 3.0, "count": 4.0}) == {
        "loss": 1.5, "accuracy": 0.75, "count": 4.0}
    assert summarize_eval({"loss_sum": 0.5, "correct": 1.0, "count": 1.0}) == {
        "loss": 0.5, "accuracy": 1.0, "count": 1.0}
    # No example at all (an empty split): zeros, not a division by zero.
    assert summarize_eval({"loss_sum": 0.0, "correct": 0.0, "count": 0.0}) == {
        "loss": 0.0, "accuracy": 0.0, "count": 0.0}
