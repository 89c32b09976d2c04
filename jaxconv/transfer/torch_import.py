"""torchvision state dicts -> jaxconv models: safe file reading, key mapping, layout conversion.

torchvision's AlexNet and VGG are `features` (an `nn.Sequential`), `avgpool` and `classifier`
(another `nn.Sequential`), so their parameter names are `features.<i>.weight` and
`classifier.<i>.weight` with `<i>` the module's position, ReLUs, pools and dropouts included.
Our `AlexNet(variant="torchvision")` and `VGG` have the same modules in the same order, named
(`conv1`, `relu1`, ..., `avgpool`, `flatten`, ..., `fc8`), so position i before `avgpool` is
`features.<i>` and position i after `flatten` is `classifier.<i>` (`torchvision_keys`).

Layouts: conv weights OIHW -> HWIO, linear weights (out, in) -> (in, out), biases unchanged.
The first FC layer needs one more step: torchvision flattens NCHW maps in (c, h, w) order, we
flatten NHWC maps in (h, w, c) order, so FC6's input rows are permuted (`_fc_after_flatten`).

Files are read without unpickling arbitrary objects: `.safetensors` with `safetensors.numpy`
(no torch needed) and `.pth` / `.pt` with `torch.load(weights_only=True)` (torch imported only
then).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.layers import Conv, Dense
from jaxconv.models.alexnet import AlexNet
from jaxconv.models.base import Classifier
from jaxconv.models.vgg import VGG
from jaxconv.transfer.paths import SEPARATOR, path_name

logger = logging.getLogger(__name__)

# Names `from_torch` / `load` accept, and the model each one builds (before `model_kwargs`).
ARCHITECTURES: dict[str, Callable[..., Classifier]] = {
    "alexnet": lambda **kw: AlexNet(variant="torchvision", **kw),
    "vgg11": lambda **kw: VGG(depth=11, **kw),
    "vgg16": lambda **kw: VGG(depth=16, **kw),
}
TORCH_SUFFIXES = (".pth", ".pt")
SAFETENSORS_SUFFIX = ".safetensors"


class WeightImportError(ValueError):
    """A checkpoint that cannot be read, or whose keys or shapes do not fit the model."""


@dataclasses.dataclass(frozen=True)
class ImportReport:
    """What an import did.

    Attributes:
      loaded: `(torch_key, model_path)` pairs copied from the checkpoint, e.g.
        `("features.0.weight", "conv1/kernel")`.
      initialized: model parameter paths left freshly initialised (the head when
        `num_classes` differs from the checkpoint's), e.g. `("fc8/kernel", "fc8/bias")`.
      checkpoint_classes: output size of the checkpoint's last layer.
    """

    loaded: tuple[tuple[str, str], ...]
    initialized: tuple[str, ...]
    checkpoint_classes: int

    def __str__(self) -> str:
        fresh = ", ".join(self.initialized) or "none"
        return (f"loaded {len(self.loaded)} tensors; freshly initialised: {fresh} "
                f"(checkpoint has {self.checkpoint_classes} classes)")


def architecture(name: str) -> Callable[..., Classifier]:
    """The constructor `ARCHITECTURES[name]` (keyword arguments as the model's).

    Raises:
      ValueError: unknown `name` (the message lists the valid ones).
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown pretrained architecture {name!r}; valid: "
                         f"{sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]


_TORCH_BOILERPLATE = ("Weights only load failed", "Check the documentation")


def _torch_error_reason(error: Exception) -> str:
    """The informative part of a `torch.load` error (its weights-only message is long)."""
    reasons = []
    for line in str(error).splitlines():
        line = line.split("WeightsUnpickler error:")[-1].strip()
        if line and not line.startswith(_TORCH_BOILERPLATE):
            reasons.append(line)
    return " ".join(reasons) or str(error).strip() or type(error).__name__


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"reading {path} needs PyTorch (pip install torch), or convert the "
                          "file to .safetensors first") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise WeightImportError(
            f"cannot read {path} as a PyTorch state dict: torch.load(weights_only=True) failed "
            f"({_torch_error_reason(e)}). The file is corrupt, not a torch file, or holds "
            "objects other than tensors and plain containers; jaxconv never unpickles "
            "arbitrary objects") from e
    if not isinstance(obj, Mapping):
        raise WeightImportError(f"{path} holds a {type(obj).__name__}, not a state dict "
                                "(a mapping from parameter names to tensors)")
    bad = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise WeightImportError(f"{path} is not a plain state dict: entries {bad} are not "
                                "tensors")
    return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in obj.items()}


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except Exception as e:  # SafetensorError, or a dtype NumPy lacks (bfloat16).
        raise WeightImportError(f"cannot read {path} as safetensors: {e}") from e


def read_state_dict(path: str | PathLike) -> dict[str, np.ndarray]:
    """Reads a state dict file into NumPy arrays without running code from it.

    Args:
      path: a `.pth` / `.pt` file written by `torch.save(model.state_dict(), ...)` (needs
        torch; read with `weights_only=True`), or a `.safetensors` file (no torch needed).

    Returns:
      `{torch_name: array}`, floating tensors as float32.

    Raises:
      FileNotFoundError: no file at `path`.
      WeightImportError: an unknown extension, or a file that is not a plain state dict
        (corrupt, or a pickle that would build other objects or call functions).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return _read_torch(path)
    if suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    raise WeightImportError(f"cannot read {path}: unknown extension {suffix!r}; valid: "
                            f"{list(TORCH_SUFFIXES) + [SAFETENSORS_SUFFIX]}")


def torchvision_keys(model: Classifier) -> dict[str, str]:
    """torchvision module names of the model's layers with parameters, by position.

    Args:
      model: `AlexNet(variant="torchvision")` or `VGG` (concrete or abstract).

    Returns:
      `{torch_prefix: layer_name}`, e.g. `{"features.0": "conv1", ..., "classifier.6": "fc8"}`.

    Raises:
      ValueError: the model has no torchvision layout (no `avgpool` then `flatten`).
    """
    names = model.layer_names
    if "avgpool" not in names or "flatten" not in names:
        raise ValueError(f"{type(model).__name__} with layers {names} has no torchvision "
                         "layout (features, avgpool, flatten, classifier)")
    features, classifier = names[: names.index("avgpool")], names[names.index("flatten") + 1:]
    keys = {}
    for group, layers in (("features", features), ("classifier", classifier)):
        for i, name in enumerate(layers):
            if isinstance(getattr(model, name), (Conv, Dense)):
                keys[f"{group}.{i}"] = name
    return keys


def _fc_after_flatten(weight: np.ndarray, spatial: tuple[int, int]) -> np.ndarray:
    """(out, c*h*w) torch weight -> (h*w*c, out) kernel for our NHWC flatten."""
    h, w = spatial
    out, flat = weight.shape
    return weight.reshape(out, flat // (h * w), h, w).transpose(2, 3, 1, 0).reshape(flat, out)


def _torch_shape(param_shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    """The torch shape of one of our parameters (for checks and messages)."""
    if kind == "bias":
        return param_shape
    if kind == "conv":
        kh, kw, cin, cout = param_shape
        return cout, cin, kh, kw
    return param_shape[::-1]


def _conversions(model: Classifier) -> dict[str, tuple[str, str, Callable]]:
    """`{torch_key: (model_path, kind, convert)}` for every parameter of the model."""
    keys = torchvision_keys(model)
    first_fc = next(n for n in model.layer_names[model.layer_names.index("flatten"):]
                    if isinstance(getattr(model, n), Dense))
    spatial = model.avgpool.output_size
    table = {}
    for prefix, name in keys.items():
        layer = getattr(model, name)
        if isinstance(layer, Conv):
            kind, convert = "conv", lambda a: a.transpose(2, 3, 1, 0)
        elif name == first_fc:
            kind, convert = "linear", lambda a: _fc_after_flatten(a, spatial)
        else:
            kind, convert = "linear", lambda a: a.T
        table[f"{prefix}.weight"] = (path_name((name, "kernel")), kind, convert)
        if layer.bias is not None:
            table[f"{prefix}.bias"] = (path_name((name, "bias")), "bias", lambda a: a)
    return table


def _some(names: list[str], limit: int = 20) -> str:
    """`names` as a list, cut after `limit` entries with a count of the rest."""
    return str(names) if len(names) <= limit else f"{names[:limit]} and {len(names) - limit} more"


def convert_state_dict(abstract: Classifier, state: Mapping[str, np.ndarray]):
    """A torchvision state dict in our names and layouts, checked against `abstract`.

    Args:
      abstract: `AlexNet(variant="torchvision")` or `VGG`, concrete or abstract (shapes only).
      state: `{torch_name: array}` in torch layouts.

    Returns:
      `({model_path: float32 array}, ImportReport)`; model paths are `conv1/kernel`-style
      (`jaxconv.transfer.paths.path_name`).
      The head is left out when its class count differs from the model's.

    Raises:
      ValueError: the model has no torchvision layout.
      WeightImportError: missing/unexpected keys or a shape mismatch.
    """
    table = _conversions(abstract)
    head_prefix, head = list(torchvision_keys(abstract).items())[-1]
    head_keys = {f"{head_prefix}.weight", f"{head_prefix}.bias"}
    missing = sorted(set(table) - set(state))
    unexpected = sorted(set(state) - set(table))
    if missing or unexpected:
        raise WeightImportError(f"checkpoint keys do not fit {type(abstract).__name__}: "
                                f"missing {_some(missing)}, unexpected {_some(unexpected)}")
    classes = int(np.shape(state[f"{head_prefix}.weight"])[0])
    new_head = classes != getattr(abstract, head).out_features
    params, loaded = {}, []
    for key, (path, kind, convert) in table.items():
        if new_head and key in head_keys:
            continue
        layer, attr = path.split(SEPARATOR)
        want = tuple(getattr(getattr(abstract, layer), attr).shape)
        array = np.asarray(state[key])
        if array.shape != _torch_shape(want, kind):
            raise WeightImportError(
                f"shape mismatch for {key}: checkpoint {array.shape}, model expects "
                f"{_torch_shape(want, kind)} in torch layout ({path} is {want})")
        params[path] = convert(array.astype(np.float32, copy=False))
        loaded.append((key, path))
    fresh = tuple(p for _, (p, _, _) in table.items() if p not in params)
    return params, ImportReport(tuple(loaded), fresh, classes)


def _build(setup) -> Classifier:
    name, num_classes, seed, kwargs = setup
    return architecture(name)(num_classes=num_classes, rngs=nnx.Rngs(seed), **dict(kwargs))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _initial_values(setup, paths: frozenset) -> dict:
    """The constructor's initial values at `paths` only; XLA drops the other initialisers."""
    state = nnx.state(_build(setup))
    return {p: v.get_value() for p, v in nnx.to_flat_state(state) if p in paths}


def import_state_dict(name: str, state: Mapping[str, np.ndarray], num_classes: int = 1000, *,
                      seed: int = 0, dtype=None, **model_kwargs) -> tuple[Classifier, ImportReport]:
    """Builds model `name` with its parameters taken from a torchvision state dict.

    The model is built abstractly (`nnx.eval_shape`, no random initialisation of the layers
    that are loaded); what the checkpoint does not provide (the head when `num_classes`
    differs from the checkpoint's, and the dropout RNG streams) gets the values
    `ARCHITECTURES[name](num_classes=num_classes, rngs=nnx.Rngs(seed), **model_kwargs)`
    gives it, computed in one jitted call whose unused initialisers XLA removes (FC8:
    `jaxconv.models.vgg.dense_kernel_init` for VGG, LeCun normal for AlexNet; zero bias).

    Args:
      name: a key of `ARCHITECTURES` ("alexnet", "vgg11", "vgg16").
      state: `{torch_name: array}` (NumPy arrays or anything `np.asarray` takes), torch layouts.
      num_classes: the model's outputs; if it differs from the checkpoint's, the head is new.
      seed: initialisation and dropout seed for what is not loaded.
      dtype: the model's compute dtype (None: float32; `"bfloat16"` for mixed precision);
        the parameters are float32 either way.
      **model_kwargs: passed to the model (e.g. `dropout`; `channels`, `hidden` for VGG);
        hashable values (lists become tuples).

    Returns:
      `(model, report)`: the model (eval mode) and what was loaded / initialised.

    Raises:
      ValueError: unknown `name` (the message lists the valid ones).
      WeightImportError: missing or unexpected keys (named), or a shape mismatch (key, both
        shapes).
    """
    architecture(name)
    kwargs = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                          for k, v in dict(model_kwargs, dtype=dtype).items()))
    setup = (name, num_classes, seed, kwargs)
    abstract = nnx.eval_shape(lambda: _build(setup))
    params, report = convert_state_dict(abstract, state)
    graphdef, abstract_state = nnx.split(abstract)
    flat = list(nnx.to_flat_state(abstract_state))
    rest = frozenset(p for p, _ in flat if path_name(p) not in params)
    fresh = _initial_values(setup, rest)
    values = [(p, v.replace(fresh[p] if p in rest else
                            jnp.asarray(params[path_name(p)]))) for p, v in flat]
    model = nnx.merge(graphdef, nnx.from_flat_state(values))
    model.eval()
    return model, report


def from_torch(name: str, path: str | PathLike, num_classes: int = 1000, *, seed: int = 0,
               dtype=None, **model_kwargs) -> Classifier:
    """Builds torchvision's AlexNet / VGG in jaxconv from a local state dict file.

    The mapping from torchvision's names and layouts is in the module docstring. When
    `num_classes` differs from the checkpoint's, the last FC layer (`fc8`) is freshly
    initialised (the usual transfer-learning start); the report saying which tensors were
    loaded and which are new is logged at INFO on `jaxconv.transfer.torch_import` (use
    `import_state_dict` to get it as a value).

    Args:
      name: "alexnet" (`AlexNet(variant="torchvision")`), "vgg11" or "vgg16" (`VGG`).
      path: `.pth` / `.pt` (read with `torch.load(weights_only=True)`; torch imported only
        here) or `.safetensors` (no torch needed).
      num_classes: outputs of the returned model.
      seed: initialisation seed for a new head, and the dropout seed.
      dtype: the model's compute dtype (None: float32; `"bfloat16"` for mixed precision:
        convs and matmuls in bfloat16, float32 parameters and logits).
      **model_kwargs: passed to the model constructor (e.g. `dropout=0.2`).

    Returns:
      The model, in eval mode (call `model.train()` to fine-tune with dropout).

    Raises:
      ValueError: unknown `name` (valid names listed).
      FileNotFoundError: no file at `path`.
      WeightImportError: an unreadable or unsafe file (path and reason), missing or
        unexpected keys (named), a shape mismatch (key and both shapes).

    Examples:
      >>> from PIL import Image
      >>> from jaxconv.transfer import from_torch, imagenet_eval_batch
      >>> model = from_torch("vgg16", "vgg16-397923af.pth")  # doctest: +SKIP
      >>> x = imagenet_eval_batch([Image.open("cat.jpg")])  # (1, 224, 224, 3)  # doctest: +SKIP
      >>> model(x).argmax(-1)  # an ImageNet class index  # doctest: +SKIP
    """
    architecture(name)
    model, report = import_state_dict(name, read_state_dict(path), num_classes, seed=seed,
                                      dtype=dtype, **model_kwargs)
    logger.info("%s from %s: %s", name, path, report)
    return model
