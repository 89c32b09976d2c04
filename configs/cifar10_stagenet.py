"""StageNet (three conv -> ReLU -> LCN -> max-pool stages) on CIFAR-10.

    python train.py --config configs/cifar10_stagenet.py --workdir runs/cifar10_stagenet

CIFAR-10 must be prepared once (needs TensorFlow, downloads ~160 MB):
``python -m jaxconv.data.prepare --dataset cifar10 --data_dir ~/tensorflow_datasets``.
Stages of 64, 128, 256 channels (3x3 convs, LCN windows 5, 5, 3, 2x2 max pooling) and a linear
classifier; SGD momentum 0.9, coupled weight decay 5e-4, 1 warmup epoch then cosine from 0.02,
batch 128, 30 epochs; the usual CIFAR augmentation on device (4 px padded random crops,
horizontal flips). Meant for a GPU/TPU: on 2 CPU cores a step takes ~0.3-0.6 s (~3 min an
epoch). Not trained to the end on our machines (no CIFAR-10 there): no accuracy is claimed.
"""

import ml_collections

from configs import default as default_lib


def get_config() -> ml_collections.ConfigDict:
    """configs/default.py with the fields above overridden."""
    c = default_lib.get_config()
    c.dataset = "cifar10"
    c.distortion.rotation_degrees = 0.0
    c.distortion.translate = 0.0
    c.distortion.scale = (1.0, 1.0)
    c.distortion.crop_padding = 4
    c.distortion.horizontal_flip = True

    c.model = "stagenet"
    c.model_kwargs.features = (64, 128, 256)
    c.model_kwargs.kernel_size = 3
    c.model_kwargs.lcn_kernel_size = (5, 5, 3)
    c.model_kwargs.pool = "max"

    c.batch_size = 128
    c.eval_batch_size = 1000
    c.num_epochs = 30
    c.optimizer.learning_rate = 0.02
    c.optimizer.warmup_epochs = 1.0
    c.optimizer.schedule = "cosine"
    c.log_every_steps = 100
    c.eval_every_steps = 1953  # Every 5 epochs (390.6 steps per epoch).
    c.checkpoint_every_steps = 1953
    return c
