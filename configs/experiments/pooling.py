"""Pooling and robustness to shifts: LeNet-5 with max vs average pooling on mnist5k.

    python -m jaxconv.experiments --config configs/experiments/pooling.py \
        --workdir runs/experiments/pooling

A small example of the experiment format (docs/experiments.md): two training variants, each
evaluated again on test images shifted 2 pixels right, 3 seeds, one claim. About 2 x 3 runs
of ~40 s on 2 CPU cores; ``--quick`` (one seed, 60 steps) takes about 30 s.
"""

from configs import mnist5k_lenet5
from jaxconv.experiments import Claim, Experiment, Shift, Variant


def get_experiment() -> Experiment:
    base = mnist5k_lenet5.get_config()
    base.eval_every_steps = 0  # Evaluate once, at the end.
    return Experiment(
        name="Pooling and shifted test images (LeNet-5, mnist5k)",
        base=base,
        variants=(
            Variant("max", {"model_kwargs.pool": "max"}, description="max pooling"),
            Variant("avg", {"model_kwargs.pool": "avg"}, description="average pooling"),
            Variant("max-shift2", eval_of="max", eval_transform=Shift(dx=2)),
            Variant("avg-shift2", eval_of="avg", eval_transform=Shift(dx=2)),
        ),
        seeds=(0, 1, 2),
        claims=(
            Claim("max vs avg", "Max pooling classifies at least as well as average pooling.",
                  better="max", worse="avg"),
        ),
        quick={"num_train_steps": 60, "checkpoint_every_steps": 60},
    )
