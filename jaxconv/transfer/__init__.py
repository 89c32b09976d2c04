"""Transfer learning: start from pretrained parameters, replace the head, freeze the bottom.

- `jaxconv.transfer.paths`: `path_name`, `flat_params`: the one spelling of a parameter's
  name (``stage1/conv/kernel``) that patterns, reports and the optimizer use.
- `jaxconv.transfer.matching`: `load_matching` (copy what fits; a head of another shape
  stays new), `LoadReport`, and the sources `checkpoint_params` (a jaxconv training run)
  and `torch_params` (a torchvision state dict).
- `jaxconv.transfer.freezing`: `freeze`, `freeze_labels`, `with_frozen`,
  `parameter_layers` (optax: frozen parameters get exactly zero updates).
- `jaxconv.transfer.torch_import`: torchvision AlexNet / VGG state dicts -> jaxconv models
  (`from_torch`, `import_state_dict`, `convert_state_dict`, safe `read_state_dict`).
- `jaxconv.transfer.download`: `load(name)`: torchvision's ImageNet weights, downloaded
  once into a cache (SHA-256 checked), then imported.
- `jaxconv.transfer.preprocessing`: `imagenet_eval`: the eval preprocessing those weights
  expect (resize 256, crop 224, normalise), NHWC.

`jaxconv.pretrained` re-exports the pretrained-model part (`load`, `from_torch`,
`imagenet_eval`, ...). Importing this package does not import torch; only reading a
``.pth`` file does.
"""

from jaxconv import extras

extras.require("train", feature=__name__)

from jaxconv.transfer.download import TORCHVISION_URLS, DownloadError, download, load
from jaxconv.transfer.freezing import (
    FROZEN,
    LOWER,
    TRAINABLE,
    freeze,
    freeze_labels,
    parameter_layers,
    with_frozen,
)
from jaxconv.transfer.matching import (
    LoadReport,
    checkpoint_params,
    load_matching,
    torch_params,
)
from jaxconv.transfer.paths import flat_params, path_name
from jaxconv.transfer.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    imagenet_eval,
    imagenet_eval_batch,
    resize_center_crop,
)
from jaxconv.transfer.torch_import import (
    ARCHITECTURES,
    ImportReport,
    WeightImportError,
    convert_state_dict,
    from_torch,
    import_state_dict,
    read_state_dict,
    torchvision_keys,
)

__all__ = [
    "ARCHITECTURES",
    "FROZEN",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LOWER",
    "TORCHVISION_URLS",
    "TRAINABLE",
    "DownloadError",
    "ImportReport",
    "LoadReport",
    "WeightImportError",
    "checkpoint_params",
    "convert_state_dict",
    "download",
    "flat_params",
    "freeze",
    "freeze_labels",
    "from_torch",
    "imagenet_eval",
    "imagenet_eval_batch",
    "import_state_dict",
    "load",
    "load_matching",
    "parameter_layers",
    "path_name",
    "read_state_dict",
    "resize_center_crop",
    "torch_params",
    "torchvision_keys",
    "with_frozen",
]
