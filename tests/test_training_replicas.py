"""`jaxconv.training.replicas` (config.num_seeds): the config checks, the stacked iterator and
its checkpoint state, the vmapped steps against one step per seed, the per-seed figures.

The end-to-end runs (a K-seed run against K 1-seed runs, resume, predict, plots) are in
tests/test_training_seeds_e2e.py (slow tier)."""

import glob
import json
import os
import shutil
import struct

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from configs import default as default_lib
from jaxconv import data, run_history, training
from jaxconv import functional as F
from jaxconv.models import StageNet
from jaxconv.training import replicas, steps, validate_config
from jaxconv.training.config import ConfigError
from jaxconv.training.logs import MetricLogger, StepMetrics
from jaxconv.training.state import create_train_state, root_keys, split_model


@pytest.mark.parametrize("value, message", [
    (0, "config.num_seeds=0 must be >= 1"),
    (2.0, "config.num_seeds=2.0 has type float; expected int"),
    (True, "config.num_seeds=True has type bool; expected int"),
])
def test_bad_num_seeds_is_one_error_naming_it(value, message):
    config = default_lib.get_config()
    with config.ignore_type():
        config.num_seeds = value
    with pytest.raises(ConfigError, match=f"^{message}"):
        validate_config(config)


def test_several_seeds_refuse_pmap_and_seeds_beyond_int32():
    config = default_lib.get_config()
    config.num_seeds, config.parallelism = 2, "pmap"
    with pytest.raises(ConfigError, match=r"^config.num_seeds=2 needs config.parallelism='jit'"):
        validate_config(config)
    config.parallelism, config.seed = "jit", 2**31 - 1
    with pytest.raises(ConfigError, match=r"^config.num_seeds=2 with config.seed=2147483647 "):
        validate_config(config)
    config.num_seeds = 1
    validate_config(config)


def test_replica_configs_are_the_single_seed_configs():
    config = default_lib.get_config()
    config.seed, config.num_seeds = 7, 3
    got = replicas.replica_configs(config)
    assert [(c.seed, c.num_seeds) for c in got] == [(7, 1), (8, 1), (9, 1)]
    assert (config.seed, config.num_seeds) == (7, 3)  # Copies: the run's config is unchanged.
    config.num_seeds = 1
    assert replicas.replica_configs(config)[0] is config


def _iterator(digits_dir, seed):
    return data.train_iterator("digits", digits_dir, global_batch_size=16, seed=seed)


def test_replica_iterator_stacks_each_seeds_batches_and_resumes(digits_dir):
    data.ensure_prepared("digits", digits_dir)
    stacked = replicas.ReplicaIterator([_iterator(digits_dir, 4), _iterator(digits_dir, 5)])
    alone = [_iterator(digits_dir, 4), _iterator(digits_dir, 5)]
    for _ in range(3):
        batch, want = next(stacked), [next(it) for it in alone]
        assert batch["image"].shape == (2, 16, 8, 8, 1)
        for k in range(2):
            np.testing.assert_array_equal(batch["image"][k], want[k]["image"])
            np.testing.assert_array_equal(batch["label"][k], want[k]["label"])
    assert not np.array_equal(batch["label"][0], batch["label"][1])  # Own data order.
    state = stacked.get_state()
    after = [next(stacked)["label"] for _ in range(2)]
    fresh = replicas.ReplicaIterator([_iterator(digits_dir, 4), _iterator(digits_dir, 5)])
    fresh.set_state(state)
    fresh.start_prefetch()
    for labels in after:
        np.testing.assert_array_equal(next(fresh)["label"], labels)
    with pytest.raises(ValueError, match="not that of 3 replicas' iterators"):
        replicas.ReplicaIterator([_iterator(digits_dir, 0)] * 3).set_state(state)


def _tiny_state(seed, tx):
    params_key, dropout_key, rng = root_keys(seed)
    model = StageNet(10, input_shape=(8, 8, 1), features=(4, 8), hidden=(8,), dropout=0.5,
                     rngs=nnx.Rngs(params=params_key, dropout=dropout_key))
    model_def, params = split_model(model)
    return model_def, create_train_state(params, tx, rng)


# Measured: the vmapped step's parameters differ from a step per seed by at most ~6e-8
# (absolute; float32 rounding of batched convolutions and reductions) after 3 steps.
RTOL, ATOL = 1e-5, 1e-6


@pytest.mark.parametrize("mode", ["xla", "cpu"])
def test_vmapped_step_equals_one_step_per_seed(mode):
    tx = optax.sgd(0.1, momentum=0.9)
    model_def, s3 = _tiny_state(3, tx)
    _, s4 = _tiny_state(4, tx)
    kwargs = dict(model=model_def, tx=tx, schedule=optax.constant_schedule(0.1),
                  distortion=data.Distortion(rotation_degrees=10.0, translate=1.0),
                  mean=(0.3,), std=(0.4,))

    def train(state, batch):
        return steps.train_step(state, batch, **kwargs)

    def evaluate(state, batch):
        return steps.eval_step(state, batch, model=model_def, mean=(0.3,), std=(0.4,))

    rng = np.random.default_rng(0)
    batches = [{"image": rng.integers(0, 256, (2, 12, 8, 8, 1), dtype=np.uint8),
                "label": rng.integers(0, 10, (2, 12)).astype(np.int32)} for _ in range(3)]
    test = {"image": batches[0]["image"][0], "label": batches[0]["label"][0],
            "mask": np.ones(12, bool)}
    with F.lowering(mode):
        many_train, many_eval = (jax.jit(f) for f in replicas.vmap_steps(train, evaluate))
        one_train, one_eval = jax.jit(train), jax.jit(evaluate)
        stacked, alone = replicas.stack([s3, s4]), [s3, s4]
        for batch in batches:
            stacked, metrics = many_train(stacked, batch)
            for k in range(2):
                alone[k], m = one_train(alone[k], {n: v[k] for n, v in batch.items()})
                np.testing.assert_allclose(metrics["loss"][k], m["loss"], rtol=RTOL)
        totals = many_eval(stacked, test)
        for k in range(2):
            for a, b in zip(jax.tree.leaves(replicas.select(stacked, k)),
                            jax.tree.leaves(alone[k]), strict=True):
                np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
            np.testing.assert_allclose(totals["loss_sum"][k], one_eval(alone[k], test)["loss_sum"],
                                       rtol=RTOL)
    # The replicas really differ (own init, dropout and batches).
    assert not np.allclose(alone[0].params["output"]["kernel"], alone[1].params["output"]["kernel"])


def test_per_seed_figures():
    summary = replicas.summarize_eval({"loss_sum": np.array([30.0, 60.0]),
                                       "correct": np.array([24.0, 27.0]),
                                       "count": np.array([30.0, 30.0])})
    want = {"loss": 1.5, "accuracy": 0.85, "count": 30.0, "loss_seeds": [1.0, 2.0],
            "accuracy_seeds": [0.8, 0.9]}
    assert summary.keys() == want.keys()
    for key, value in want.items():
        assert summary[key] == pytest.approx(value, rel=1e-12), key
    means, per_seed = replicas.split_seeds({"loss": np.array([1.0, 3.0]), "lr": 0.5})
    assert means == {"loss": 2.0, "lr": 0.5} and per_seed == {"loss": [1.0, 3.0]}
    config = default_lib.get_config()
    config.seed, config.num_seeds = 5, 2
    history = [{"step": 1, "train_loss_seeds": [9.0, 9.0]},
               {"step": 2, "train_loss_seeds": [0.5, 0.7], "train_accuracy_seeds": [0.6, 0.4]}]
    assert replicas.seed_summary(config, summary, history) == {"num_seeds": 2, "seeds": [
        {"seed": 5, "test_loss": 1.0, "test_accuracy": 0.8, "train_loss": 0.5,
         "train_accuracy": 0.6},
        {"seed": 6, "test_loss": 2.0, "test_accuracy": 0.9, "train_loss": 0.7,
         "train_accuracy": 0.4}]}
    config.num_seeds = 1
    assert replicas.seed_summary(config, summary, history) == {}


def _scalars(workdir):
    """``{tag: [values]}`` of the TensorBoard event files in `workdir` (TFRecord framing:
    length, its CRC, the Event proto, its CRC)."""
    from tensorboardX.proto import event_pb2

    out = {}
    for path in glob.glob(f"{workdir}/events.out.tfevents.*"):
        raw, pos = open(path, "rb").read(), 0
        while pos < len(raw):
            (length,) = struct.unpack("<Q", raw[pos:pos + 8])
            event = event_pb2.Event.FromString(raw[pos + 12:pos + 12 + length])
            pos += 16 + length
            for value in event.summary.value:
                out.setdefault(value.tag, []).append(value.simple_value)
    return out


def test_logger_writes_each_seed_beside_the_mean(tmp_path):
    logger = MetricLogger(str(tmp_path), total_steps=10, initial_step=0, enabled=True,
                          progress_bar=False, seeds=(3, 4))
    logger.log_train(5, {"loss": np.array([1.0, 2.0]), "learning_rate": 0.1,
                         "images_per_second": 50.0})
    logger.log_eval(5, {"loss": 0.75, "accuracy": 0.5, "count": 10.0,
                        "loss_seeds": [0.5, 1.0], "accuracy_seeds": [0.6, 0.4]})
    logger.close()
    assert logger.history == [{"step": 5, "train_loss": 1.5, "train_learning_rate": 0.1,
                               "train_images_per_second": 50.0, "train_loss_seeds": [1.0, 2.0],
                               "test_loss": 0.75, "test_accuracy": 0.5,
                               "test_loss_seeds": [0.5, 1.0],
                               "test_accuracy_seeds": [0.6, 0.4]}]
    tags = _scalars(tmp_path)
    assert tags["train/loss"] == [1.5] and tags["train/loss/seed4"] == [2.0]
    np.testing.assert_allclose(tags["eval/accuracy/seed3"], [0.6])
    assert tags["eval/accuracy"] == [0.5] and "train/learning_rate/seed3" not in tags


def _step_metrics(step):
    """A step's metrics as the vmapped train step returns them for two seeds."""
    return {"loss": np.array([step, 2.0 * step], np.float32),
            "accuracy": np.array([0.5, 0.25], np.float32),
            "grad_norm": np.array([1.0, step], np.float32),
            "learning_rate": np.array([0.1, 0.1], np.float32),
            "param_norm": np.array([3.0, 4.0 + step], np.float32)}


def test_steps_a_stop_saved_between_logs_average_into_the_next_log(tmp_path):
    def logger(workdir, start):
        os.makedirs(workdir, exist_ok=True)
        stream = run_history.HistoryWriter(workdir)
        stream.start(start)
        return MetricLogger(workdir, total_steps=4, initial_step=start, enabled=True,
                            progress_bar=False, stream=stream, seeds=(7, 8))

    straight = logger(str(tmp_path / "a"), 0)
    tracker = StepMetrics(jax.device_get, 10, straight)
    for step in range(1, 5):
        tracker.add(step, _step_metrics(step))
    tracker.flush(4)
    stopped = logger(str(tmp_path / "b"), 0)
    tracker = StepMetrics(jax.device_get, 10, stopped)
    for step in (1, 2):
        tracker.add(step, _step_metrics(step))
    tracker.save_pending()  # A stop at step 2, between two logs; the run resumes there.
    resumed = logger(str(tmp_path / "b"), 2)
    tracker = StepMetrics(jax.device_get, 10, resumed)
    tracker.preload(resumed.stream.history.pending)
    for step in (3, 4):
        tracker.add(step, _step_metrics(step))
    tracker.flush(4)
    for logged in (straight.history[-1], resumed.history[-1]):
        assert logged["train_loss_seeds"] == [2.5, 5.0]  # Means of steps 1..4, per seed.
        assert logged["train_param_norm_seeds"] == [3.0, 8.0]  # The last step's.
        assert logged["train_loss"] == 3.75 and logged["train_learning_rate"] == pytest.approx(0.1)
    for log in (straight, stopped, resumed):
        log.close()


def test_a_two_seed_run_resumes_bit_for_bit(digits_dir, tmp_path):
    """The fast tier's K-seed resume (tests/test_fast_invariants.py's recipe): a kill after
    the step-2 checkpoint, then the same config again; the stacked state, both iterators'
    positions and the per-seed figures continue exactly (the slow tier resumes a K=3 run)."""
    config = default_lib.get_config()
    config.data_dir, config.num_seeds, config.seed = digits_dir, 2, 5
    config.num_train_steps, config.checkpoint_every_steps, config.log_every_steps = 4, 2, 1
    config.batch_size, config.eval_batch_size = 16, 100
    config.progress_bar = config.write_plots = False
    config.model_kwargs.features, config.model_kwargs.lcn_kernel_size = (4,), (3,)
    config.model_kwargs.hidden, config.model_kwargs.dropout = (8,), 0.5
    one_device = jax.devices()[:1]
    straight = training.train_and_evaluate(config, tmp_path, devices=one_device)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    shutil.rmtree(tmp_path / "checkpoints" / "4")
    os.remove(tmp_path / "metrics.json")
    again = training.train_and_evaluate(config, tmp_path, devices=one_device)
    assert np.asarray(again.step).tolist() == [4, 4]
    for a, b in zip(jax.tree.leaves(jax.device_get(straight)),
                    jax.tree.leaves(jax.device_get(again)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert json.loads((tmp_path / "metrics.json").read_text())["seeds"] == metrics["seeds"]
    assert [s["seed"] for s in metrics["seeds"]] == [5, 6]
