"""AlexNet on ImageNet (ILSVRC-2012) with the paper's recipe; for GPUs or TPUs.

    python train.py --config configs/imagenet_alexnet.py --workdir runs/imagenet_alexnet

imagenet2012 must be prepared once from the official tars (needs TensorFlow, ~150 GB):
``python -m jaxconv.data.prepare --dataset imagenet2012 --data_dir DIR --manual_dir TARS``,
then add ``--config.data_dir=DIR``. On a TPU slice or several hosts, run the same command on
every host (multi-host TPUs are detected; elsewhere add --coordinator_address,
--num_processes and --process_id).

Krizhevsky, Sutskever & Hinton 2012, §5: SGD, batch 128, momentum 0.9, weight decay 5e-4
(coupled: ``g + wd * w``, as in the paper's update rule), learning rate 0.01 divided by 10
three times (here at epochs 30, 60 and 80; the paper did it by hand when the validation error
stopped improving), ~90 epochs, dropout 0.5 in FC6/FC7. Data (§4.1): images resized to 256 on
the shorter side, random 227x227 crops (the paper's "224" does not give its 55x55 maps) and
horizontal flips. Differences: no PCA colour jitter, evaluation on the single central crop
(the paper averaged 10 crops), and all biases initialised to 0 (the paper used 1 in some
layers). The paper reached 40.7 % top-1 error (1 model, 10 crops); no figure is claimed here:
not trained on our machines.
"""

import ml_collections

from configs import default as default_lib


def get_config() -> ml_collections.ConfigDict:
    """configs/default.py with the fields above overridden."""
    c = default_lib.get_config()
    c.dataset = "imagenet2012"
    c.image_size = 227
    c.train_crop = "resize_random_crop"
    c.crop_resize_size = 256
    c.worker_count = 0
    c.distortion.rotation_degrees = 0.0
    c.distortion.translate = 0.0
    c.distortion.scale = (1.0, 1.0)
    c.distortion.horizontal_flip = True

    c.model = "alexnet"
    c.model_kwargs = ml_collections.ConfigDict()
    c.model_kwargs.variant = "original"  # original (227x227, LRN, groups) or torchvision.
    c.model_kwargs.dropout = 0.5

    c.batch_size = 128
    c.eval_batch_size = 512
    c.num_epochs = 90
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (30, 60, 80)
    c.optimizer.decay_factor = 0.1
    c.log_every_steps = 100
    c.eval_every_steps = 10_000  # About every epoch (10,009 steps).
    c.checkpoint_every_steps = 5_000
    c.keep_checkpoints = 3
    return c
