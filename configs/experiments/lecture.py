"""The chapter's claims, measured: each claim one comparison, on mnist5k (28x28 MNIST digits).

    python -m jaxconv.experiments --config configs/experiments/lecture.py \
        --workdir runs/experiments/lecture
    python -m jaxconv.experiments --config configs/experiments/lecture.py \
        --workdir /tmp/lecture_quick --quick   # the runner end to end, 1-2 min

The base network is a StageNet (two 3x3 conv stages of 16 and 32 channels, ReLU, 2x2 max
pooling, no LCN, a linear classifier), SGD momentum 0.9 with coupled weight decay 5e-4, cosine
schedule from 0.05, batch 64, 1,000 steps (16 epochs of the 4,000 images), no distortion:
training sees only unchanged images, so robustness measured on shifted or re-lit test images
comes from the architecture. Three seeds per variant. Groups:

- connectivity: one hidden layer of 8 x 28 x 28 units, fully-connected, locally-connected
  (5x5 windows) or convolutional (5x5 filters), then the same linear classifier
  (`jaxconv.models.ConnectivityNet`): parameters and test accuracy;
- pooling (max, avg, L2, or none: stride-2 convolutions downsample instead, so every variant
  has the same 7x7x32 features and classifier) and test images shifted right by 1, 2, 3
  pixels: accuracy lost, and the cosine similarity of the penultimate features of shifted and
  unshifted digits;
- LCN (conv -> ReLU -> LCN -> pool vs conv -> ReLU -> pool) and test images made brighter,
  lower in contrast, or lit by a left-to-right gradient;
- dropout, input distortion and weight decay, each alone against none of them, at 500, 1,000
  and 4,000 training images (the same 1,000 steps each);
- SGD with and without momentum: steps to reach 97 % test accuracy (evaluated every 50 steps);
- transfer: pretrain on digits 0-4, then digits 5-9 with 10, 50 or 400 images per class,
  from scratch or from the pretrained stages with 0, 1 or 2 of them frozen (300 steps each).

Verdict rule (fixed before running, `jaxconv.experiments.Claim`): "supported" when the two
rows' 95 % t-intervals over seeds do not overlap in the claimed direction, "contradicted"
when they do not overlap the other way, else "inconclusive". A parameter count is the same
for every seed: its interval has no width, so the verdict compares the counts.
"""

import ml_collections

from configs import default as default_lib
from jaxconv.experiments import (
    Brightness,
    Claim,
    Contrast,
    Experiment,
    Gradient,
    RunOf,
    Shift,
    Variant,
)

STEPS = 1000
TRANSFER_STEPS = 300
POOLS = ("max", "avg", "l2", "strided")
CONNECTIVITY = {"connectivity": "conv", "features": 8, "kernel_size": 5}
SHIFTS = (1, 2, 3)
LIGHTING = {"bright": Brightness(0.3), "contrast": Contrast(0.5), "gradient": Gradient(0.5)}
SIZES = {500: "mnist5k_500", 1000: "mnist5k_1000", 4000: "mnist5k"}
DISTORTION = {"distortion.rotation_degrees": 10.0, "distortion.translate": 2.0,
              "distortion.scale": (0.9, 1.1)}
REGULARIZERS = {"dropout": {"model_kwargs.dropout": 0.5}, "distortion": DISTORTION,
                "wd": {"optimizer.weight_decay": 5e-4}}
TRANSFER_SIZES = {10: "mnist5k_100", 50: "mnist5k_500", 400: "mnist5k"}
LOW, HIGH = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


def base_config() -> ml_collections.ConfigDict:
    """configs/default.py on mnist5k: the StageNet of the module docstring."""
    c = default_lib.get_config()
    c.dataset = "mnist5k"
    c.model_kwargs.features = (16, 32)
    c.model_kwargs.lcn_kernel_size = (None, None)
    c.model_kwargs.conv_stride = 1
    c.distortion.rotation_degrees = 0.0
    c.distortion.translate = 0.0
    c.distortion.scale = (1.0, 1.0)
    c.batch_size = 64
    c.eval_batch_size = 1000
    c.num_train_steps = STEPS
    c.checkpoint_every_steps = STEPS
    c.log_every_steps = 100
    return c


def _connectivity():
    names = {"fc": "fully-connected", "lc": "locally-connected", "conv": "convolutional"}
    variants = [Variant(k, {"model": "connectivity",
                            "model_kwargs": {**CONNECTIVITY, "connectivity": k}},
                        description=f"one {name} hidden layer, 8x28x28 units")
                for k, name in names.items()]
    claims = [Claim("FC vs LC, parameters", "a fully-connected layer needs more parameters "
                    "than a locally-connected one of the same width", better="lc", worse="fc",
                    metric="num_params", higher_is_better=False),
              Claim("LC vs conv, parameters", "sharing weights (conv) needs fewer parameters "
                    "than locally-connected", better="conv", worse="lc", metric="num_params",
                    higher_is_better=False)]
    claims += [Claim(f"conv vs {k}", f"the convolutional layer classifies better than the "
                     f"{names[k]} one of the same width", better="conv", worse=k)
               for k in ("fc", "lc")]
    return variants, claims


def _pooling():
    variants = [Variant(p, {"model_kwargs.pool": p}, description=f"{p} pooling")
                if p != "strided" else
                Variant(p, {"model_kwargs.pool": "none", "model_kwargs.conv_stride": 2},
                        description="no pooling: stride-2 convolutions")
                for p in POOLS if p != "max"]
    variants.insert(0, Variant("max", {}, description="max pooling"))
    variants += [Variant(f"{p}-shift{k}", eval_of=p, eval_transform=Shift(dx=k))
                 for p in POOLS for k in SHIFTS]
    claims = [Claim(f"{p} pooling vs none, {k} px",
                    f"{p} pooling makes the net robust to where a feature is: a {k}-pixel "
                    f"shift of the test digits costs less accuracy than without pooling",
                    better=f"{p}-shift{k}", worse=f"strided-shift{k}", metric="drop",
                    higher_is_better=False)
              for p in POOLS[:3] for k in SHIFTS]
    claims += [Claim(f"{p} pooling vs none, 2 px, features",
                     f"with {p} pooling the penultimate features of a digit shifted 2 pixels "
                     f"stay closer (cosine) to the unshifted digit's than without pooling",
                     better=f"{p}-shift2", worse="strided-shift2",
                     metric="feature_similarity")
               for p in POOLS[:3]]
    return variants, claims


def _lcn():
    variants = [Variant("lcn", {"model_kwargs.lcn_kernel_size": (5, 3)},
                        description="conv, ReLU, LCN, max pool")]
    for name, transform in LIGHTING.items():
        variants += [Variant(f"max-{name}", eval_of="max", eval_transform=transform),
                     Variant(f"lcn-{name}", eval_of="lcn", eval_transform=transform)]
    claims = [Claim("typical stage", "conv -> rectify + LCN -> pool beats conv -> pool",
                    better="lcn", worse="max")]
    claims += [Claim(f"LCN vs {name}", f"LCN removes brightness: the {name} change costs "
                     f"less accuracy with LCN", better=f"lcn-{name}", worse=f"max-{name}",
                     metric="drop", higher_is_better=False) for name in LIGHTING]
    return variants, claims


def _regularization():
    variants, claims = [], []
    for n, dataset in SIZES.items():
        plain = f"plain-{n}"
        variants.append(Variant(plain, {"dataset": dataset, "optimizer.weight_decay": 0.0},
                                description=f"{n} images, no regularizer"))
        for reg, overrides in REGULARIZERS.items():
            name = f"{reg}-{n}"
            variants.append(Variant(name, {"dataset": dataset, "optimizer.weight_decay": 0.0,
                                           **overrides}, description=f"{n} images, {reg}"))
            claims += [Claim(f"{reg}, {n} images", f"{reg} improves test accuracy",
                             better=name, worse=plain),
                       Claim(f"{reg}, {n} images, gap", f"{reg} narrows the train/test gap",
                             better=name, worse=plain, metric="gap", higher_is_better=False)]
    return variants, claims


def _momentum():
    evals = {"eval_every_steps": 50}
    variants = [Variant("momentum", evals, description="SGD, momentum 0.9"),
                Variant("no-momentum", {**evals, "optimizer.momentum": 0.0},
                        description="plain SGD")]
    claims = [Claim("momentum", "momentum reaches 97 % test accuracy in fewer steps",
                    better="momentum", worse="no-momentum", metric="steps_to_target",
                    higher_is_better=False)]
    return variants, claims


# Transfer: pretraining on digits 0-4, and what a fine-tuning run from it overrides.
PRETRAIN = Variant("pretrain04", {"classes": LOW},
                   description="digits 0-4 of the 4,000-image split")
FROM_PRETRAINED = {"init.checkpoint": RunOf("pretrain04"), "init.exclude": ("output/*",)}


def digits_5_9(dataset: str, steps: int) -> dict:
    """The overrides of a run on digits 5-9 of `dataset` (a subset name) for `steps` steps."""
    return {"dataset": dataset, "classes": HIGH, "num_train_steps": steps,
            "checkpoint_every_steps": steps}


def _transfer():
    variants, claims = [PRETRAIN], []
    for per_class, dataset in TRANSFER_SIZES.items():
        common = digits_5_9(dataset, TRANSFER_STEPS)
        scratch = f"scratch-{per_class}"
        variants.append(Variant(scratch, common,
                                description=f"digits 5-9, {per_class}/class, from scratch"))
        for frozen in (0, 1, 2):
            name = f"transfer{frozen}-{per_class}"
            variants.append(Variant(name, {**common, **FROM_PRETRAINED,
                                           "freeze.first_layers": frozen},
                                    description=f"digits 5-9, {per_class}/class, pretrained "
                                                f"stages, {frozen} frozen"))
            claims.append(Claim(f"transfer ({frozen} frozen), {per_class}/class",
                                "pretrained stages beat training from scratch with the same "
                                "budget", better=name, worse=scratch))
    return variants, claims


def get_experiment() -> Experiment:
    variants, claims = [], []
    for group in (_connectivity, _pooling, _lcn, _regularization, _momentum, _transfer):
        v, c = group()
        variants += v
        claims += c
    # Training variants first, then the rows evaluating them (each group lists its own).
    variants = [v for v in variants if v.trains] + [v for v in variants if not v.trains]
    return Experiment(
        name="The chapter's claims, measured (mnist5k)",
        base=base_config(),
        variants=tuple(variants),
        seeds=(0, 1, 2),
        claims=tuple(claims),
        quick={"num_train_steps": 20, "checkpoint_every_steps": 20, "eval_every_steps": 10,
               "model_kwargs.features": (4, 8)},
        # One variant per mechanism the runner uses: shifted and re-lit test images, a
        # subset dataset, steps to a target, fine-tuning from another variant's run.
        quick_variants=("max", "lcn", "dropout-500", "no-momentum", "pretrain04",
                        "transfer2-10"),
        target_accuracy=0.97,
    )
