"""StageNet on the 8x8 digits: the main job (about 20 s on 2 CPU cores), and every config key.

    python train.py --config configs/default.py --workdir runs/default
    python train.py --config configs/default.py:lenet5 --workdir runs/lenet5   # another model

Every key the trainer reads is declared here, with a comment. Other configs import this one
and override a few fields, so `--config.<key>=<value>` works with any of them; keys cannot be
added from the command line (`lock_config=True`), and a value must have the declared type.
`jaxconv.training.config.validate_config` checks the values and names the key in its error.

Another model: ``--config configs/default.py:<model>`` (`MODEL_PRESETS`), since
``--config.model=<model>`` alone keeps StageNet's ``model_kwargs``, which another model does
not take, and keys cannot be removed from the command line (docs/training.md).
"""

import ml_collections

# `--config configs/default.py:<model>`: (dataset, model_kwargs) of each model. The dataset
# stays digits (None) when the model takes 8x8 images, else it is the smallest shipped dataset
# the model takes: mnist5k is offline like digits; cifar10 and imagenet2012 are prepared first
# (docs/data.md). The input shape and class count come from the dataset.
MODEL_PRESETS = {
    "stagenet": (None, None),  # The model_kwargs of get_config below.
    "lenet5": ("mnist5k", {"activation": "relu", "pool": "max"}),
    "vgg": ("cifar10", {"depth": 11, "dropout": 0.5, "hidden": 512}),
    "alexnet": ("imagenet2012", {"variant": "torchvision", "dropout": 0.5}),
    "connectivity": (None, {"connectivity": "conv", "features": 8, "kernel_size": 5}),
}
# eval_every_steps of a preset on another dataset: every 5 epochs of that dataset at the batch
# size of 100 (mnist5k: 4,000 training images, cifar10: 50,000, imagenet2012: 1,281,167), as
# every 100 steps would evaluate the 10,000 or 50,000 test images far more often than digits'.
PRESET_EVAL_EVERY_STEPS = {"lenet5": 200, "vgg": 2_500, "alexnet": 64_000}


def get_config(model: str = "stagenet") -> ml_collections.ConfigDict:
    """The default configuration (digits, StageNet, SGD + momentum, cosine schedule).

    Args:
      model: a key of `MODEL_PRESETS` (``--config configs/default.py:<model>``): that model
        with its own ``model_kwargs``, on digits or the smallest dataset it takes.

    Raises:
      ValueError: `model` is not a key of `MODEL_PRESETS` (the valid keys are listed).
    """
    c = ml_collections.ConfigDict()

    c.seed = 0  # Seeds parameter init, data order, distortions and dropout.
    # Train this many independent replicas in one program (jax.vmap over their stacked
    # state): replica k uses seed + k everywhere (init, dropout, distortions, data order) and
    # equals a 1-seed run with --config.seed=seed+k. metrics.json's figures are the mean over
    # the seeds, with each seed's under "seeds" (docs/training.md). jit parallelism only.
    c.num_seeds = 1

    # --- Data ---
    c.dataset = "digits"  # A key of jaxconv.data.DATASETS: digits, mnist, cifar10, imagenet2012.
    # TFDS data directory (~ is expanded; local or gs://). digits is prepared here on first
    # use; the TFDS built-ins must be prepared once with `python -m jaxconv.data.prepare`.
    c.data_dir = "~/tensorflow_datasets"
    c.image_size = 0  # imagenet2012 only: square side the host crops to (0: 224).
    # imagenet2012 only: host train crop, "random_resized_crop" (Inception) or
    # "resize_random_crop" (AlexNet: shorter side to crop_resize_size, random square crop).
    c.train_crop = "random_resized_crop"
    c.crop_resize_size = 0  # imagenet2012 only: shorter side before cropping (0: size*256/224).
    c.worker_count = 0  # grain worker processes for the host pipeline (0: read in-process).
    # Train and evaluate on these labels only, renumbered 0..len-1 in this order (the model
    # gets len(classes) outputs); () uses every class.
    c.classes = ()

    # On-device random distortion of training images (jaxconv.data.Distortion), per dataset.
    c.distortion = ml_collections.ConfigDict()
    c.distortion.rotation_degrees = 10.0  # Max absolute rotation in degrees.
    c.distortion.translate = 1.0  # Max absolute shift in pixels, along y and x.
    c.distortion.scale = (0.9, 1.1)  # (min, max) zoom factor; (1.0, 1.0) is off.
    c.distortion.horizontal_flip = False  # Mirror left-right with probability 1/2.
    c.distortion.crop_padding = 0  # Pad each side by this many pixels, random crop back.
    c.distortion.crop_padding_mode = "constant"  # Padding for the crop: constant or reflect.
    c.distortion.brightness = 0.0  # Max absolute brightness delta on the [0, 1] scale.
    c.distortion.contrast = 0.0  # Contrast factor drawn from [1 - contrast, 1 + contrast].

    # --- Model ---
    c.model = "stagenet"  # A key of jaxconv.models.MODELS: lenet5, stagenet, alexnet, vgg.
    # Keyword arguments of the model class. num_classes and the input shape arguments
    # (input_shape, in_channels, input_size) are filled in from the dataset unless set here.
    c.model_kwargs = ml_collections.ConfigDict()
    c.model_kwargs.features = (16, 32)  # Output channels per stage (number of stages).
    c.model_kwargs.kernel_size = 3  # Conv kernel size, all stages.
    c.model_kwargs.lcn_kernel_size = (5, 3)  # Local contrast normalization window per stage.
    c.model_kwargs.pool = "max"  # Pooling per stage: max, avg, l2 or none.
    c.model_kwargs.hidden = ()  # Hidden fully-connected layer sizes before the classifier.
    c.model_kwargs.dropout = 0.0  # Dropout rate before each fully-connected layer.
    # Mixed precision: the dtype the model's convs, matmuls, pooling and normalization compute
    # in, float32 or bfloat16. Parameters, optimizer state, gradients, the loss, softmax and
    # metrics stay float32 either way (float16 would need loss scaling, so it is not offered).
    c.compute_dtype = "float32"

    # --- Fine-tuning (jaxconv.transfer) ---
    # Start from pretrained parameters (at most one of the two): parameters whose name and
    # shape match are loaded, the others (a head for another class count) stay freshly
    # initialized; the log lists both. Ignored when resuming from this workdir's checkpoint.
    c.init = ml_collections.ConfigDict()
    c.init.checkpoint = ""  # A training workdir, its checkpoints/ dir or a checkpoints/<step>.
    c.init.torch_weights = ""  # torchvision .pth/.safetensors (model alexnet torchvision, vgg).
    c.init.exclude = ()  # Path patterns kept freshly initialized even if they fit ("output/*").
    # Parameters that get zero updates (optax.set_to_zero: no momentum, no weight decay).
    c.freeze = ml_collections.ConfigDict()
    c.freeze.first_layers = 0  # Freeze this many parameter layers from the input up.
    c.freeze.patterns = ()  # ... and parameters whose path matches one of these ("stage1/*").
    # Learning-rate factor for the unfrozen layers below the head (1.0: same rate as the head).
    c.freeze.lower_lr_scale = 1.0

    # --- Optimization ---
    c.batch_size = 100  # Global batch size over all devices and processes.
    c.eval_batch_size = 300  # Global eval batch size (last batch padded and masked).
    c.num_epochs = 40  # Training length in epochs (of the train split) ...
    c.num_train_steps = -1  # ... unless this is > 0: then exactly this many steps.

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.learning_rate = 0.05  # Peak learning rate.
    c.optimizer.momentum = 0.9  # SGD momentum (0: plain SGD).
    c.optimizer.nesterov = False  # Nesterov momentum.
    # Coupled L2 weight decay: wd * param is added to the gradient before momentum (as in
    # torch.optim.SGD and the AlexNet paper), not decoupled as in AdamW.
    c.optimizer.weight_decay = 5e-4
    # Parameters whose name (last path component) is listed here are not decayed: biases and
    # normalization scales. () decays every parameter.
    c.optimizer.no_decay_names = ("bias", "scale")
    c.optimizer.schedule = "cosine"  # constant, step or cosine (after the linear warmup).
    c.optimizer.warmup_epochs = 0.0  # Linear warmup from 0 to learning_rate, in epochs.
    c.optimizer.decay_epochs = (30, 60, 80)  # step schedule: epochs where the rate drops.
    c.optimizer.decay_factor = 0.1  # step schedule: multiplier at each of decay_epochs.
    c.optimizer.final_lr_fraction = 0.0  # cosine: final rate as a fraction of the peak.
    c.optimizer.grad_clip_norm = 0.0  # Clip gradients to this global norm first (0: off).

    # --- Parallelism, logging, checkpoints ---
    c.parallelism = "jit"  # jit: jax.jit + Mesh/NamedSharding; pmap: jax.pmap + pmean.
    c.log_every_steps = 50  # Host reads train metrics every this many steps (TB, bar).
    # Evaluate on the test split every this many steps, and at the end (0: at the end only).
    # 100: 6 evaluations of the 600-step default run, a test curve for about 0.1 s.
    c.eval_every_steps = 100
    c.checkpoint_every_steps = 300  # Save a checkpoint every this many steps (and at end).
    c.keep_checkpoints = 2  # How many recent checkpoints to keep.
    # Divergence guard: an evaluation whose test loss is above this times ln(classes) (the
    # loss of a uniform guess) stops the run as failed, exit status 1 (0: off).
    c.divergence_factor = 10.0
    # (start, stop): a jax.profiler trace of steps start..stop-1 into workdir/profile, for
    # TensorBoard's profile plugin or ui.perfetto.dev, e.g. (10, 20); () is off.
    c.profile_steps = ()
    c.progress_bar = True  # tqdm progress bar on stderr (process 0).
    # At the end of training, write PNGs to workdir/plots/ (process 0): filters, curves,
    # confusion matrix, distortions, feature maps (`python -m jaxconv.plots` does it later).
    c.write_plots = True
    return use_model(c, model)


def use_model(c: ml_collections.ConfigDict, model: str) -> ml_collections.ConfigDict:
    """`c` with ``model``, ``model_kwargs`` and ``dataset`` from ``MODEL_PRESETS[model]`` (and,
    on another dataset, ``eval_every_steps`` from `PRESET_EVAL_EVERY_STEPS`)."""
    if model not in MODEL_PRESETS:
        raise ValueError(f"unknown model {model!r} in --config configs/default.py:<model>; "
                         f"valid: {sorted(MODEL_PRESETS)}")
    dataset, kwargs = MODEL_PRESETS[model]
    if kwargs is not None:
        c.model = model
        c.model_kwargs = ml_collections.ConfigDict(kwargs)
    if dataset is not None:
        c.dataset = dataset
        c.eval_every_steps = PRESET_EVAL_EVERY_STEPS[model]
    return c
