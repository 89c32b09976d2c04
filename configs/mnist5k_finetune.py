"""Transfer-learning demo, step 2: digits 5-9 from 10 labelled images per class, on the conv
stages learnt from digits 0-4.

    python train.py --config configs/mnist5k_pretrain.py --workdir runs/mnist5k_pretrain
    python train.py --config configs/mnist5k_finetune.py --workdir runs/mnist5k_finetune

Loads every parameter of ``runs/mnist5k_pretrain`` except the classifier (``output/*`` stays
freshly initialized: new classes), freezes both conv stages (``first_layers=2``: zero
updates, no weight decay) and trains 300 steps on the 50 training images
of digits 5-9 in ``mnist5k_100`` (10 per class); the test split is mnist5k's 500 test images of
5-9. The same budget from scratch, for comparison (docs/transfer.md)::

    python train.py --config configs/mnist5k_finetune.py --workdir runs/mnist5k_scratch \\
        --config.init.checkpoint= --config.init.exclude= --config.freeze.first_layers=0

Measured over ten seeds (configs/experiments/transfer.py, rows "transfer2-10-300" and
"scratch-10-300"; docs/claims.md): 87.7 +- 0.4 % with the pretrained stages, 85.0 +- 2.3 %
from scratch (mean +- 95 % interval): better on average and far steadier, but the intervals
touch, so the claims page calls it inconclusive at this scale and says why.
"""

import ml_collections

from configs.experiments import lecture

FROZEN = 2  # Conv stages kept as pretrained (0, 1 or 2).


def get_config() -> ml_collections.ConfigDict:
    """The lecture's "transfer2-10" row: base StageNet, mnist5k_100, digits 5-9, 300 steps."""
    c = lecture.base_config()
    # dataset "mnist5k_100", classes 5-9, 300 steps (checkpointed at the end).
    c.update(lecture.digits_5_9("mnist5k_100", lecture.TRANSFER_STEPS))
    c.init.checkpoint = "runs/mnist5k_pretrain"
    c.init.exclude = ("output/*",)
    c.freeze.first_layers = FROZEN
    return c
