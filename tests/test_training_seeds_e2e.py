"""config.num_seeds end to end: replica k of a K-seed run equals the 1-seed run of seed + k
(under the xla and the cpu lowering), a K-seed run resumes bit for bit, and predict / plots
pick a replica with ``seed_index``."""

import contextlib
import io
import json
import os

import jax
import numpy as np
import pytest

from configs import default as default_lib
from jaxconv import data, plots, runs, training
from jaxconv import functional as F
from jaxconv.plots import workdir as plots_workdir
from jaxconv.predict import Predictor
from jaxconv.predict.cli import main as predict_main

pytestmark = pytest.mark.slow  # trains: the full suite only

SEED, K, N = 3, 3, 4  # Replicas SEED..SEED+K-1; 2N steps, a checkpoint every N.
# Measured (8 steps, 4 fake CPU devices, both lowerings): a replica's parameters differ from
# its 1-seed run's by at most 1.2e-7 absolute (float32 rounding: vmap batches the
# convolutions and reductions); the bounds are ~8x above that.
RTOL, ATOL = 1e-5, 1e-6


def _config(data_dir, *, seed=SEED, num_seeds=K, steps=2 * N):
    c = default_lib.get_config()
    c.data_dir, c.seed, c.num_seeds = data_dir, seed, num_seeds
    c.progress_bar = c.write_plots = False
    c.batch_size, c.eval_batch_size = 20, 100
    c.num_train_steps, c.checkpoint_every_steps, c.log_every_steps = steps, N, 2
    c.eval_every_steps = 0
    # Dropout and distortions on (their keys differ per replica); a schedule that does not
    # depend on the run's length (the resume test extends a run).
    c.model_kwargs.features, c.model_kwargs.hidden, c.model_kwargs.dropout = (8, 16), (16,), 0.5
    c.optimizer.schedule, c.optimizer.decay_epochs = "step", (0.04,)
    return c


_RUNS = {}


def _runs(digits_dir, tmp_path_factory, mode):
    """``{"k": (workdir, state), 0: ..., 1: ..., 2: ...}``: the K-seed run and the 1-seed runs
    of each of its seeds, trained under lowering `mode` (once per test session)."""
    if mode not in _RUNS:
        root = tmp_path_factory.mktemp(f"seeds_{mode}")
        out, logs = {}, {}
        with F.lowering(mode):
            for name, config in [("k", _config(digits_dir))] + [
                    (k, _config(digits_dir, seed=SEED + k, num_seeds=1)) for k in range(K)]:
                with contextlib.redirect_stdout(io.StringIO()) as log:
                    out[name] = (str(root / str(name)),
                                 training.train_and_evaluate(config, root / str(name)))
                logs[name] = log.getvalue()
        out["logs"] = logs
        _RUNS[mode] = out
    return _RUNS[mode]


def test_the_first_line_says_how_many_seeds(digits_dir, tmp_path_factory):
    logs = _runs(digits_dir, tmp_path_factory, "cpu")["logs"]
    params = f"{training.build_job(_config(digits_dir, num_seeds=1)).num_params:,}"
    first = {name: log.splitlines()[0] for name, log in logs.items()}
    assert first["k"].startswith(f"stagenet ({params} parameters per seed) on digits: steps 0..8")
    assert first["k"].endswith(f", 3 seeds ({SEED}, {SEED + 1}, {SEED + 2}) in one program")
    assert first[0].startswith(f"stagenet ({params} parameters) on digits: steps 0..8")
    assert first[0].endswith("parallelism=jit")


def _metrics(workdir):
    return json.loads(open(os.path.join(workdir, runs.METRICS_FILE)).read())


@pytest.mark.parametrize("mode", ["cpu", "xla"])
def test_each_replica_equals_the_single_seed_run(digits_dir, tmp_path_factory, mode):
    runs_ = _runs(digits_dir, tmp_path_factory, mode)
    workdir, stacked = runs_["k"]
    assert np.asarray(stacked.step).tolist() == [2 * N] * K
    metrics = _metrics(workdir)
    assert [s["seed"] for s in metrics["seeds"]] == [SEED, SEED + 1, SEED + 2]
    worst = 0.0
    for k in range(K):
        single_dir, single = runs_[k]
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(stacked.params),
                                jax.tree.leaves(single.params), strict=True):
            a, b = np.asarray(a)[k], np.asarray(b)
            worst = max(worst, float(np.max(np.abs(a - b))))
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL,
                                       err_msg=f"seed index {k} {jax.tree_util.keystr(path)}")
        np.testing.assert_array_equal(np.asarray(stacked.rng)[k], single.rng)
        mine, theirs = metrics["seeds"][k], _metrics(single_dir)
        # At most one of the 297 test images may flip between two logits this close.
        assert abs(mine["test_accuracy"] - theirs["test_accuracy"]) <= 1 / 297 + 1e-12
        for key in ("test_loss", "train_loss", "train_accuracy"):
            np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-4, err_msg=key)
    print(f"lowering {mode}: largest parameter difference {worst:.3g}")
    # The top-level figures are the means over the seeds.
    for key in ("test_accuracy", "test_loss", "train_loss"):
        np.testing.assert_allclose(metrics[key], np.mean([s[key] for s in metrics["seeds"]]),
                                   rtol=1e-12)
    assert metrics["history"][-1]["test_accuracy_seeds"] == [
        s["test_accuracy"] for s in metrics["seeds"]]
    # The replicas differ: their own init, dropout and data order.
    kernels = np.asarray(stacked.params["output"]["kernel"])
    assert not np.allclose(kernels[0], kernels[1])


def test_a_run_of_several_seeds_resumes_bit_for_bit(digits_dir, tmp_path_factory, tmp_path):
    _, uninterrupted = _runs(digits_dir, tmp_path_factory, "cpu")["k"]
    with F.lowering("cpu"):
        first_half = training.train_and_evaluate(_config(digits_dir, steps=N), tmp_path)
        assert np.asarray(first_half.step).tolist() == [N] * K
        resumed = training.train_and_evaluate(_config(digits_dir), tmp_path)
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(uninterrupted))
    for (path, a), b in zip(leaves, jax.tree.leaves(jax.device_get(resumed)), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    assert not np.array_equal(np.asarray(first_half.params["output"]["kernel"]),
                              np.asarray(resumed.params["output"]["kernel"]))
    workdir = _runs(digits_dir, tmp_path_factory, "cpu")["k"][0]
    assert _metrics(tmp_path)["seeds"] == _metrics(workdir)["seeds"]


def _test_images(digits_dir, n=8):
    (batch,) = data.eval_batches("digits", digits_dir, batch_size=297)
    return batch["image"][:n]


def test_predict_and_plots_pick_a_replica(digits_dir, tmp_path_factory, tmp_path, capsys):
    runs_ = _runs(digits_dir, tmp_path_factory, "cpu")
    workdir = runs_["k"][0]
    images = _test_images(digits_dir)
    for k in range(K):
        got = Predictor.from_checkpoint(workdir, seed_index=k).probabilities(images)
        want = Predictor.from_checkpoint(runs_[k][0]).probabilities(images)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    for index, where, message in [(K, workdir, f"use 0..{K - 1} (config.num_seeds={K})"),
                                  (1, runs_[0][0], "use 0 (it trained one seed)")]:
        with pytest.raises(ValueError, match=rf"seed_index={index} is out of range .*"
                                             rf"{message.replace('(', '.').replace(')', '.')}"):
            runs.load_trained_model(where, seed_index=index)
        with pytest.raises(SystemExit) as exit_info:
            predict_main(["--workdir", where, "--seed_index", str(index), "x.png"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"seed_index={index} is out of range" in err
    # Plots: replica 2's figures in plots/seed_index2/, its curves from its own history.
    paths = plots.write_all(workdir, seed_index=2)
    assert {os.path.dirname(p) for p in paths} == {os.path.join(workdir, "plots", "seed_index2")}
    history = plots_workdir._history(workdir, 2)
    seeds = _metrics(workdir)["seeds"]
    assert history[-1]["test_accuracy"] == seeds[2]["test_accuracy"]
    with pytest.raises(ValueError, match="seed_index=3 is out of range"):
        plots.write_all(workdir, seed_index=3)
    assert not os.path.exists(os.path.join(workdir, "plots", "seed_index3"))


def test_fine_tuning_from_a_run_of_several_seeds_is_refused(digits_dir, tmp_path_factory):
    workdir = _runs(digits_dir, tmp_path_factory, "cpu")["k"][0]
    for path in (workdir, os.path.join(workdir, "checkpoints"),
                 os.path.join(workdir, "checkpoints", str(2 * N))):
        config = _config(digits_dir, num_seeds=1)
        config.init.checkpoint = path
        with pytest.raises(training.ConfigError, match=rf"is a run of {K} seeds"):
            training.setup(config)
