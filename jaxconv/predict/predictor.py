"""`Predictor`: a model plus its eval preprocessing, jitted and batched, returning top-k labels."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.data.distortions import normalize
from jaxconv.data.transforms import center_crop
from jaxconv.predict.images import (
    RESIZE_POLICIES,
    ImageError,
    check_size,
    describe,
    load_image,
    read_image,
)
from jaxconv.runs import RunInfo, load_trained_model, make_crop
from jaxconv.transfer import paths, preprocessing, torch_import

# Labels per image when the caller does not say (fewer if the model has fewer classes).
DEFAULT_TOP_K = 5


@dataclasses.dataclass(frozen=True)
class FilePrediction:
    """Top-k `(label, probability)` for one file, or the error that kept it from a prediction.

    Attributes:
      file: the path as given.
      top_k: ``(label, probability)`` pairs, most probable first; empty after an error.
      error: why the file got no prediction, or None.
      input: what was done to the file (`jaxconv.predict.images.describe`), e.g.
        ``"28x28 -> 8x8 (fit), RGB -> gray"``; empty after an error.
    """

    file: str
    top_k: tuple[tuple[str, float], ...] = ()
    error: str | None = None
    input: str = ""

    def to_json(self) -> dict:
        record = {"file": self.file} | ({"input": self.input} if self.input else {})
        record["top_k"] = [{"label": label, "probability": p} for label, p in self.top_k]
        if self.error is not None:
            record["error"] = self.error
        return record


def nonfinite_params(model: nnx.Module) -> list[str]:
    """The names (``stage1/conv/kernel``) of `model`'s parameters holding a NaN or an inf."""
    return [name for name, value in paths.flat_params(nnx.state(model, nnx.Param)).items()
            if not np.isfinite(np.asarray(value)).all()]


class Predictor:
    """Predicts class probabilities with exactly the preprocessing used at evaluation.

    Args:
      model: an nnx classifier; it is put in eval mode (dropout off).
      class_names: one name per logit.
      image_shape: `(H, W, C)` the model takes (the dataset's image shape).
      mean, std: the dataset's normalisation (`DatasetInfo.mean` / `.std`, [0, 1] scale).
      batch_size: images per jitted call; inputs are padded to it (one compilation).
      resize: what `predict_files` does to a file of another size: a policy of
        `jaxconv.predict.images.RESIZE_POLICIES` (``"fit"``, ``"crop"``, ``"pad"``,
        ``"none"``: refuse it; None is ``"none"``), or a function
        `uint8 (h, w, c) -> uint8 image_shape` (ImageNet: resize 256 + centre crop 224).

    Raises:
      ValueError: `batch_size` not a positive integer, or an unknown `resize` policy.

    Build one from a training workdir with `from_checkpoint`, from torchvision weights with
    `from_torch`.
    """

    def __init__(self, model: nnx.Module, *, class_names: Sequence[str],
                 image_shape: Sequence[int], mean, std, batch_size: int = 64,
                 resize: str | Callable[[np.ndarray], np.ndarray] | None = "fit"):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        resize = "none" if resize is None else resize
        if not callable(resize) and resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES} or a function, "
                             f"got {resize!r}")
        model.eval()
        self.graphdef, self.state = nnx.split(model)
        self.class_names = tuple(class_names)
        self.image_shape = tuple(image_shape)
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_size, self.resize = int(batch_size), resize
        self._probs = jax.jit(self._probabilities)

    @classmethod
    def from_checkpoint(cls, workdir: str | os.PathLike, *, batch_size: int = 64,
                        dtype=None, resize: str | None = None,
                        seed_index: int = 0) -> Predictor:
        """The model of a training workdir (newest checkpoint) with its eval preprocessing.

        Class names, image shape and normalization come from the run's ``run.json`` (its
        dataset's metadata; with ``config.classes`` the names of the kept classes, in order).

        Args:
          workdir: a directory ``train.py`` wrote (``run.json`` + ``checkpoints/``).
          batch_size: images per jitted call.
          dtype: compute dtype (``"float32"``, ``"bfloat16"``); None: the run's
            ``config.compute_dtype``. Parameters and probabilities stay float32.
          resize: a policy of `RESIZE_POLICIES` for files of another size; None: the
            dataset's (the eval resize + central crop for variable-size datasets such as
            imagenet2012, ``"fit"`` for the others).
          seed_index: the replica of a run of several seeds (``config.num_seeds``): the one
            trained with seed ``config.seed + seed_index``; 0 for a 1-seed run.

        Raises:
          FileNotFoundError: no ``run.json`` or no complete checkpoint in `workdir`.
          ValueError: an unreadable checkpoint, one that does not fit the model, or one with
            NaN or infinite parameters (a diverged run); a bad `batch_size`, `resize` or
            `seed_index`.
        """
        model, run = load_trained_model(workdir, dtype=dtype, seed_index=seed_index)
        if bad := nonfinite_params(model):
            raise ValueError(f"{workdir}: the newest checkpoint has NaN or infinite parameters "
                             f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): the run "
                             "diverged; train it again (e.g. a lower learning rate)")
        return cls.for_run(model, run, batch_size=batch_size, resize=resize)

    @classmethod
    def for_run(cls, model: nnx.Module, run: RunInfo, *, batch_size: int = 64,
                resize: str | None = None) -> Predictor:
        """`model` with the eval preprocessing of the training run `run` describes.

        `resize` as in `from_checkpoint`.
        """
        data = run.dataset
        if resize is None:
            crop = make_crop(run.config)
            resize = "fit" if crop is None else functools.partial(center_crop, crop=crop)
        return cls(model, class_names=data.class_names, image_shape=data.image_shape,
                   mean=data.mean, std=data.std, batch_size=batch_size, resize=resize)

    @classmethod
    def from_torch(cls, name: str, path: str | os.PathLike, *, class_names: Sequence[str],
                   batch_size: int = 16, dtype=None, **model_kwargs) -> Predictor:
        """torchvision's AlexNet / VGG from a local state dict, with ImageNet eval preprocessing.

        Files of any size are resized (shorter side 256), centre-cropped to 224x224 RGB and
        normalized with ImageNet's mean/std, as torchvision's eval transform does.

        Args:
          name: "alexnet", "vgg11" or "vgg16" (`jaxconv.pretrained.from_torch`).
          path: the `.pth` / `.safetensors` file.
          class_names: one per output (1000 ImageNet names for torchvision's files).
          batch_size: images per jitted call.
          dtype: compute dtype (None: float32; ``"bfloat16"`` on accelerators); the
            parameters and probabilities stay float32.
          **model_kwargs: passed to `jaxconv.pretrained.from_torch`.

        Raises:
          ValueError, FileNotFoundError: as `jaxconv.pretrained.from_torch`.
        """
        model = torch_import.from_torch(name, path, num_classes=len(class_names), dtype=dtype,
                                        **model_kwargs)
        side = preprocessing.CROP_SIZE
        return cls(model, class_names=class_names, image_shape=(side, side, 3),
                   mean=preprocessing.IMAGENET_MEAN, std=preprocessing.IMAGENET_STD,
                   batch_size=batch_size, resize=preprocessing.resize_center_crop)

    def _probabilities(self, state, images):
        model = nnx.merge(self.graphdef, state)
        return jax.nn.softmax(model(normalize(images, self.mean, self.std)).astype(jnp.float32))

    def probabilities(self, images) -> np.ndarray:
        """`(N, H, W, C)` uint8 images (0-255, as the dataset stores them) -> `(N, classes)`."""
        images = np.asarray(images)
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"images must be (N, {', '.join(map(str, self.image_shape))}), "
                             f"got shape {images.shape}")
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 0-255 like the dataset, got {images.dtype}")
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            padded = np.zeros((self.batch_size,) + self.image_shape, np.uint8)
            padded[:len(chunk)] = chunk
            out.append(np.asarray(self._probs(self.state, padded))[:len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def predict(self, images, top_k: int | None = None) -> list[tuple[tuple[str, float], ...]]:
        """Top-k `(label, probability)` per image, most probable first.

        Args:
          images: `(N, H, W, C)` uint8, as for `probabilities`.
          top_k: labels per image; None: `DEFAULT_TOP_K` or the class count if smaller.

        Raises:
          ValueError: `top_k` outside [1, classes], or images of the wrong shape or dtype.
        """
        if top_k is None:
            top_k = min(DEFAULT_TOP_K, len(self.class_names))
        if not 1 <= top_k <= len(self.class_names):
            raise ValueError(f"top_k must be in [1, {len(self.class_names)}], got {top_k}")
        probs = self.probabilities(images)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        return [tuple((self.class_names[j], float(p[j])) for j in row)
                for p, row in zip(probs, order)]

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """Reads one file as the uint8 image the model takes (raises `ImageError`)."""
        return self._load(path)[0]

    def _load(self, path) -> tuple[np.ndarray, str]:
        """`load`, and what was done to the file (`jaxconv.predict.images.describe`)."""
        if not callable(self.resize):
            return load_image(path, self.image_shape, self.resize)
        image = read_image(path, self.image_shape[-1])
        source = (image.shape[1], image.shape[0], "L" if image.shape[-1] == 1 else "RGB")
        image = check_size(self.resize(image), path, self.image_shape[:2])
        name = getattr(self.resize, "__name__", None) or getattr(
            getattr(self.resize, "func", None), "__name__", "resize")
        return image, describe(source, self.image_shape, name)

    def predict_files(self, paths: Sequence[str], top_k: int | None = None) -> list[FilePrediction]:
        """Predicts every readable file; a bad file gets its error, the others still run.

        A file whose probabilities are not finite (NaN or infinite: a diverged model) gets an
        error instead of them.
        """
        images, good, results = [], [], {}
        for path in paths:
            try:
                image, done = self._load(path)
                images.append(image)
                good.append((str(path), done))
            except ImageError as e:
                results[str(path)] = FilePrediction(str(path), error=str(e))
        if images:
            for (path, done), top in zip(good, self.predict(np.stack(images), top_k)):
                if all(np.isfinite(p) for _, p in top):
                    results[path] = FilePrediction(path, top, input=done)
                else:
                    results[path] = FilePrediction(
                        path, error=f"{path}: the model's probabilities are not finite (NaN "
                        "or infinite parameters or activations)", input=done)
        return [results[str(p)] for p in paths]
