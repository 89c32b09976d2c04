"""Transfer-learning demo, step 2: digits 5-9 on the conv stages learnt from digits 0-4.

    python train.py --config configs/digits_pretrain.py --workdir runs/digits_pretrain
    python train.py --config configs/digits_finetune.py --workdir runs/digits_finetune

Loads every parameter of ``runs/digits_pretrain`` except the classifier (``output/*`` stays
freshly initialized: new classes), freezes both conv stages (``first_layers=2``: zero
updates, no weight decay) and trains the head on a small budget. The same budget from
scratch, for comparison (docs/transfer.md, "From the config")::

    python train.py --config configs/digits_finetune.py --workdir runs/digits_scratch \\
        --config.init.checkpoint= --config.init.exclude= --config.freeze.first_layers=0
"""

import ml_collections

from configs import default as default_lib


def get_config() -> ml_collections.ConfigDict:
    """configs/default.py on labels 5-9, initialized from the pretrain run, stages frozen."""
    c = default_lib.get_config()
    c.classes = (5, 6, 7, 8, 9)
    c.init.checkpoint = "runs/digits_pretrain"
    c.init.exclude = ("output/*",)
    c.freeze.first_layers = 2
    c.batch_size = 50
    c.num_train_steps = 30
    c.checkpoint_every_steps = 30
    return c
