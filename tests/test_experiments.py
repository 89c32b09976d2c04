"""Tests for jaxconv.experiments: statistics against scipy, verdicts, eval transforms, the
experiment format, the report, and the runner end to end on digits (train, evaluate, skip).
The command line's ``--quick`` run is in test_experiments_lecture.py."""

import ast
import dataclasses
import json
import math
import pathlib
import shutil

import ml_collections
import numpy as np
import pytest
import scipy.stats
from flax import nnx
from shipped_configs import load_config

from jaxconv import experiments
from jaxconv.data import normalize
from jaxconv.experiments import Claim, Experiment, Variant, features, report, stats, transforms
from jaxconv.models import StageNet

ROOT = pathlib.Path(__file__).resolve().parents[1]


# --- statistics ---

def test_t_interval_closed_form():
    """[1, 2, 3]: mean 2, s = 1, half-width t_{0.975, 2} / sqrt(3) = 4.3026527 / 1.7320508."""
    s = stats.summarize([1.0, 2.0, 3.0])
    assert s.n == 3 and s.mean == 2.0
    np.testing.assert_allclose(s.half_width, 4.302652729749462 / math.sqrt(3), rtol=1e-10)
    np.testing.assert_allclose([s.low, s.high], [2 - s.half_width, 2 + s.half_width])


@pytest.mark.parametrize("values", [[0.97, 0.98, 0.975], [0.5, 0.9], np.linspace(0, 1, 7),
                                    [0.991, 0.989, 0.99, 0.985, 0.993]])
def test_t_interval_matches_scipy(values):
    x = np.asarray(values, dtype=np.float64)
    low, high = scipy.stats.t.interval(0.95, len(x) - 1, loc=x.mean(),
                                       scale=x.std(ddof=1) / math.sqrt(len(x)))
    s = stats.summarize(list(values))
    np.testing.assert_allclose([s.mean, s.low, s.high], [x.mean(), low, high], rtol=1e-12)


def test_degenerate_samples():
    one = stats.summarize([0.9])
    assert one.n == 1 and one.mean == 0.9 and math.isnan(one.low) and math.isnan(one.high)
    assert stats.summarize([]).n == 0 and math.isnan(stats.summarize([]).mean)
    const = stats.summarize([0.5, 0.5, 0.5])
    assert (const.low, const.high) == (0.5, 0.5)
    dropped = stats.summarize([1.0, None, float("nan"), 3.0])  # A run that never got there.
    assert dropped.n == 2 and dropped.mean == 2.0
    assert stats.format_summary(stats.summarize([0.9, 0.92])) .startswith("91.0 ± ")
    assert stats.format_summary(one) == "90.0" and stats.format_summary(stats.summarize([])) == "—"


def _s(low, high, n=3):
    return stats.Summary((low + high) / 2, low, high, n)


@pytest.mark.parametrize("better, worse, higher, expected", [
    (_s(0.97, 0.98), _s(0.90, 0.96), True, "supported"),
    (_s(0.90, 0.96), _s(0.97, 0.98), True, "contradicted"),
    (_s(0.95, 0.98), _s(0.96, 0.97), True, "inconclusive"),
    (_s(100, 200), _s(300, 400), False, "supported"),  # Fewer steps to the target wins.
    (_s(300, 400), _s(100, 200), False, "contradicted"),
    (stats.Summary(0.99, math.nan, math.nan, 1), _s(0.1, 0.2), True, "inconclusive"),
])
def test_verdict_rule(better, worse, higher, expected):
    assert stats.verdict(better, worse, higher) == expected


# --- evaluation transforms ---

def _images():
    return np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5, 1) * 6


def test_shift_moves_content_and_fills_zero():
    x = _images()
    y = transforms.Shift(dy=1, dx=-2)(x)
    np.testing.assert_array_equal(y[:, 1:, :3], x[:, :3, 2:])
    assert (y[:, 0] == 0).all() and (y[:, :, 3:] == 0).all()
    np.testing.assert_array_equal(transforms.Shift()(x), x)
    assert (transforms.Shift(dx=5)(x) == 0).all()


def test_brightness_contrast_gradient():
    x = _images()
    np.testing.assert_array_equal(transforms.Brightness(0.1)(x),
                                  np.clip(x.astype(int) + 26, 0, 255))  # round(25.5) = 26
    assert transforms.Brightness(-2.0)(x).max() == 0
    c = transforms.Contrast(0.5)(x).astype(float)
    mean = x.astype(float).mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(c, mean + 0.5 * (x - mean), atol=0.5)
    g = transforms.Gradient(0.2)(np.zeros((1, 2, 5, 1), np.uint8))
    np.testing.assert_array_equal(g[0, 0, :, 0], [0, 13, 26, 38, 51])  # 0..51 in 5 steps
    with pytest.raises(ValueError, match="uint8"):
        transforms.Shift(1)(x.astype(np.float32))


# --- penultimate features ---

def test_similarity_closed_forms():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [1.0, -1.0], [0.0, 0.0], [3.0, 0.0]])
    # cos = 1, 0, both zero -> 1, one zero -> 0
    assert features.similarity(a, b) == pytest.approx(0.5)
    assert features.similarity(a[:2], a[:2]) == pytest.approx(1.0)


def test_penultimate_features_feed_the_classifier():
    """logits == features @ output.kernel + output.bias: the features are the last layer's
    input, computed from uint8 images with the dataset's normalization."""
    model = StageNet(10, input_shape=(8, 8, 1), features=(4,), lcn_kernel_size=None,
                     rngs=nnx.Rngs(0))
    images = np.random.RandomState(0).randint(0, 256, (7, 8, 8, 1)).astype(np.uint8)
    feats = features.Penultimate(model, (0.3,), (0.4,), batch_size=4)(images)
    assert feats.shape == (7, 4 * 4 * 4)
    logits = model(normalize(images, (0.3,), (0.4,)))
    np.testing.assert_allclose(feats @ np.asarray(model.output.kernel.value)
                               + np.asarray(model.output.bias.value), logits, rtol=1e-5,
                               atol=1e-5)


# --- the format ---

def _base():
    return load_config("default")


def test_experiment_structure_is_checked():
    base = _base()
    with pytest.raises(ValueError, match="two variants"):
        Experiment("x", base, (Variant("a"), Variant("a")))
    with pytest.raises(ValueError, match="earlier training variant"):
        Experiment("x", base, (Variant("b", eval_of="a", eval_transform=transforms.Shift(1)),
                               Variant("a")))
    with pytest.raises(ValueError, match="eval_transform needs eval_of"):
        Experiment("x", base, (Variant("a", eval_transform=transforms.Shift(1)),))
    with pytest.raises(ValueError, match="letters, digits"):
        Experiment("x", base, (Variant("a/b"),))
    with pytest.raises(ValueError, match="names no variant"):
        Experiment("x", base, (Variant("a"),), claims=(Claim("c", "s", "a", "z"),))
    with pytest.raises(ValueError, match="metric"):
        Experiment("x", base, (Variant("a"), Variant("b")),
                   claims=(Claim("c", "s", "a", "b", metric="loss"),))


def test_apply_overrides_copies_and_refuses_new_keys():
    base = _base()
    c = experiments.apply_overrides(base, {"model_kwargs.pool": "avg", "num_train_steps": 7})
    assert (c.model_kwargs.pool, c.num_train_steps) == ("avg", 7)
    assert (base.model_kwargs.pool, base.num_train_steps) == ("max", -1)
    with pytest.raises(KeyError, match="no key 'poool'"):
        experiments.apply_overrides(base, {"model_kwargs.poool": "avg"})


def test_load_reads_get_experiment(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text("def get_experiment():\n    return 3\n")
    with pytest.raises(ValueError, match="returned int"):
        experiments.load(path)
    with pytest.raises(FileNotFoundError):
        experiments.load(tmp_path / "none.py")
    exp = experiments.load(ROOT / "configs" / "experiments" / "pooling.py")
    assert [v.name for v in exp.variants] == ["max", "avg", "max-shift2", "avg-shift2"]


def test_report_table_from_results():
    exp = Experiment("t", _base(), (Variant("a", {"seed": 1}), Variant("b"),
                                    Variant("a-shift", eval_of="a",
                                            eval_transform=transforms.Shift(dx=1))),
                     claims=(Claim("a>b", "a wins", "a", "b"),
                             Claim("b smaller", "b has fewer parameters", "b", "a",
                                   metric="num_params", higher_is_better=False)))
    acc = {"a": [0.99, 0.98, 0.985], "b": [0.90, 0.91, 0.92], "a-shift": [0.5, 0.6, 0.7]}
    results = [{"variant": v, "seed": k, "test_accuracy": x, "train_accuracy": 1.0,
                "gap": 1.0 - x, "drop": acc["a"][k] - x if v == "a-shift" else None,
                "feature_similarity": 0.9 if v == "a-shift" else None,
                "num_params": 234 if v == "b" else 1234, "train_seconds": 10.0,
                "eval_seconds": 1.0,
                "steps_to_target": None} for v, xs in acc.items() for k, x in enumerate(xs)]
    text = report.table(exp, results)
    assert "| a | seed=1 | 1,234 | 98.5 ± 1.2 | 100.0 ± 0.0 | 1.5 ± 1.2 |  |  | 10.0 | 3 |" in text
    drop = stats.format_summary(stats.summarize([0.49, 0.38, 0.285]))  # 0.985 - 0.6 = 0.385
    assert drop == "38.5 ± 25.5"
    assert (f"| a-shift | eval of a: Shift(dy=0, dx=1) | 1,234 | 60.0 ± 24.8 | 100.0 ± 0.0 | "
            f"40.0 ± 24.8 | {drop} | 0.900 ± 0.000 | 1.0 | 3 |") in text
    assert "| a>b | a wins | test_accuracy: a 98.5 ± 1.2 vs b 91.0 ± 2.5 | supported |" in text
    # A count is the same for every seed: a zero-width interval, compared as it is.
    assert text.rstrip().endswith("| b smaller | b has fewer parameters | num_params: b 234 ± 0 "
                                  "vs a 1,234 ± 0 | supported |")


def test_trainer_never_imports_experiments():
    for path in (ROOT / "jaxconv" / "training").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("jaxconv.experiments") for n in names), path


# --- the runner ---

def _digits_experiment(data_dir):
    base = load_config("default", data_dir=data_dir, num_train_steps=8, batch_size=40,
                       eval_batch_size=300, log_every_steps=4, checkpoint_every_steps=8,
                       model_kwargs=ml_collections.ConfigDict(
                           {"features": (4,), "kernel_size": 3, "lcn_kernel_size": (3,),
                            "pool": "max", "hidden": (), "dropout": 0.0}))
    return Experiment(
        "digits smoke", base,
        (Variant("max"), Variant("avg", {"model_kwargs.pool": "avg"}),
         Variant("max-bright", eval_of="max", eval_transform=transforms.Brightness(0.3)),
         Variant("finetune", {"init.checkpoint": experiments.RunOf("max"),
                              "freeze.first_layers": 1})),
        seeds=(0, 1), quick={"num_train_steps": 4, "checkpoint_every_steps": 4},
        claims=(Claim("max>avg", "max wins", "max", "avg"),))


@pytest.mark.slow
def test_runner_trains_evaluates_and_skips_on_rerun(digits_dir, tmp_path):
    exp = _digits_experiment(digits_dir)
    lines = []
    results = experiments.run_experiment(exp, str(tmp_path), quick=True, log=lines.append)
    assert [(r["variant"], r["seed"]) for r in results] == [
        ("max", 0), ("avg", 0), ("max-bright", 0), ("finetune", 0)]
    assert [line.split(":")[0] for line in lines] == [
        "variant 1/4 max seed 0", "variant 2/4 avg seed 0", "variant 3/4 max-bright seed 0",
        "variant 4/4 finetune seed 0"]
    for r in results:
        assert r["steps"] == 4 and 0 <= r["test_accuracy"] <= 1
        np.testing.assert_allclose(r["gap"], r["train_accuracy"] - r["test_accuracy"])
    bright = results[2]
    np.testing.assert_allclose(bright["drop"], results[0]["test_accuracy"]
                               - bright["test_accuracy"])
    assert bright["train_accuracy"] == results[0]["train_accuracy"] and results[0]["drop"] is None
    assert -1 <= bright["feature_similarity"] <= 1 and results[0]["feature_similarity"] is None
    # RunOf: the fine-tuning run started from the "max" run of the same seed.
    ft = json.loads((tmp_path / "finetune" / "seed0" / "run.json").read_text())
    assert ft["config"]["init"]["checkpoint"] == str(tmp_path / "max" / "seed0")
    metrics = json.loads((tmp_path / "max" / "seed0" / "metrics.json").read_text())
    assert metrics["test_examples"] == 297 and metrics["step"] == 4
    assert not (tmp_path / "max-bright" / "seed0" / "checkpoints").exists()  # Eval only.
    # Rerun: nothing trains again; the records are read back unchanged.
    lines.clear()
    again = experiments.run_experiment(exp, str(tmp_path), quick=True, log=lines.append)
    assert again == results and all(line.endswith("(done before)") for line in lines)
    # A moved workdir: every result is still reused (the fine-tuning run's init.checkpoint
    # named the old place).
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    shutil.copytree(tmp_path, moved)
    assert experiments.run_experiment(exp, str(moved), quick=True, log=lines.append) == results
    # A changed base config: its stored results are refused, naming the key that changed.
    changed = dataclasses.replace(exp, base=experiments.apply_overrides(
        exp.base, {"optimizer.learning_rate": exp.base.optimizer.learning_rate * 2}))
    with pytest.raises(experiments.ExperimentError,
                       match=r"max/seed0 holds a result of a run trained with another config "
                             r"\(optimizer.learning_rate 0.05 → 0.1\)"):
        experiments.run_experiment(changed, str(tmp_path), quick=True, log=lines.append)
    # The full settings on the quick workdir: refused, naming the run.
    with pytest.raises(experiments.ExperimentError, match="seed0 holds a run with other"):
        experiments.run_experiment(exp, str(tmp_path), quick=False, log=lines.append)
    text = experiments.write(exp, results, str(tmp_path), quick=True)
    assert (tmp_path / "report.md").read_text().count("| max-bright |") == 1
    assert "inconclusive" in text  # One seed: no interval.
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["quick"] and len(saved["runs"]) == 4
    assert "![drop](figures/drop.png)" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "figures" / "test_accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_batched_variants_are_the_eligible_training_variants(digits_dir):
    exp = _digits_experiment(digits_dir)  # max <- finetune (RunOf), avg, max-bright (eval).
    eligible = experiments.batching.batched_variants
    assert eligible(exp, (0, 1)) == {"avg": (0, 1)}
    assert eligible(exp, (3, 4, 5)) == {"avg": (3, 4, 5)}
    assert eligible(exp, (0, 2)) == {}  # Replica k trains seed first + k.
    assert eligible(exp, (0,)) == {}


@pytest.mark.slow
def test_batched_seeds_train_one_program_per_variant(digits_dir, tmp_path):
    base = _digits_experiment(digits_dir)
    exp = dataclasses.replace(base, variants=(base.variants[1], base.variants[0], (
        Variant("avg-bright", eval_of="avg", eval_transform=transforms.Brightness(0.3))),
        base.variants[3]), claims=())  # avg, max, avg-bright, finetune (from max).
    results = experiments.run_experiment(exp, str(tmp_path), batch_seeds=True,
                                         log=lambda line: None)
    assert [(r["variant"], r["seed"]) for r in results] == [
        ("avg", 0), ("avg", 1), ("max", 0), ("max", 1), ("avg-bright", 0), ("avg-bright", 1),
        ("finetune", 0), ("finetune", 1)]
    batch = tmp_path / "avg" / "seeds0-1"
    metrics = json.loads((batch / "metrics.json").read_text())
    assert metrics["num_seeds"] == 2 and [s["seed"] for s in metrics["seeds"]] == [0, 1]
    assert not (tmp_path / "avg" / "seed0" / "checkpoints").exists()  # One run: the batch.
    assert (tmp_path / "max" / "seed1" / "checkpoints").exists()  # "max" is a RunOf source.
    for k, row in enumerate(results[:2]):
        assert row["settings"]["batched"] == "seeds0-1"
        assert "batched" not in results[2 + k]["settings"]
        # The row is replica k's: the trainer's own test accuracy of that replica.
        assert row["test_accuracy"] == pytest.approx(metrics["seeds"][k]["test_accuracy"])
        assert row["train_seconds"] == pytest.approx(metrics["wall_seconds"] / 2)
        bright = results[4 + k]
        assert bright["settings"]["batched"] == "seeds0-1"
        np.testing.assert_allclose(bright["drop"], row["test_accuracy"]
                                   - bright["test_accuracy"])
    assert results[0]["test_accuracy"] != results[1]["test_accuracy"] or (
        results[0]["train_accuracy"] != results[1]["train_accuracy"])  # Two replicas.
    again = experiments.run_experiment(exp, str(tmp_path), batch_seeds=True,
                                       log=lambda line: None)
    assert again == results
    with pytest.raises(experiments.ExperimentError, match="avg/seed0 holds a run with other"):
        experiments.run_experiment(exp, str(tmp_path), log=lambda line: None)
