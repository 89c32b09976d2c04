"""Transfer-learning demo, step 1: StageNet on digits 0-4 only (about 15 s on 2 CPU cores).

    python train.py --config configs/digits_pretrain.py --workdir runs/digits_pretrain

Step 2, `configs/digits_finetune.py`, reuses its conv stages for digits 5-9.
"""

import ml_collections

from configs import default as default_lib


def get_config() -> ml_collections.ConfigDict:
    """configs/default.py on labels 0-4 (the model gets 5 outputs)."""
    c = default_lib.get_config()
    c.classes = (0, 1, 2, 3, 4)
    c.num_epochs = 20
    return c
