"""Transfer-learning demo, step 1: a small StageNet on the mnist5k digits 0-4 (~15 s on 2 cores).

    python train.py --config configs/mnist5k_pretrain.py --workdir runs/mnist5k_pretrain

Step 2, `configs/mnist5k_finetune.py`, reuses its conv stages for digits 5-9 with 10 labelled
images per class. Both are rows of the measured lecture (`configs/experiments/lecture.py`:
"pretrain04" here), so docs/claims.md gives the accuracy this demo reaches, over seeds.
"""

import ml_collections

from configs.experiments import lecture


def get_config() -> ml_collections.ConfigDict:
    """The lecture's base StageNet (two 3x3 stages of 16 and 32 channels, no LCN, max pooling,
    no distortion, 1,000 steps of 64) on the ~2,000 training images of digits 0-4."""
    c = lecture.base_config()
    c.classes = lecture.LOW
    return c
