"""Pretrained torchvision weights (AlexNet, VGG-11, VGG-16) for jaxconv models.

The public face of `jaxconv.transfer`'s pretrained-model modules (`torch_import`,
`download`, `preprocessing`), re-exported under one short name:

- `load(name)`: download torchvision's ImageNet weights once (SHA-256 checked) and import them.
- `from_torch(name, path)`: import a local `.pth` (safe `weights_only` loading) or
  `.safetensors` state dict; `import_state_dict` does the same from arrays and returns a
  report of what was loaded and what was freshly initialised.
- `imagenet_eval`: the matching eval preprocessing (resize 256, crop 224, normalise), NHWC.

Importing this package does not import torch; only reading a `.pth` file does.
"""

from jaxconv import extras

extras.require("train", "PIL", "tqdm", feature=__name__)

from jaxconv.transfer.download import TORCHVISION_URLS, DownloadError, download, load
from jaxconv.transfer.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    imagenet_eval,
    imagenet_eval_batch,
    normalize,
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
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TORCHVISION_URLS",
    "DownloadError",
    "ImportReport",
    "WeightImportError",
    "convert_state_dict",
    "download",
    "from_torch",
    "imagenet_eval",
    "imagenet_eval_batch",
    "import_state_dict",
    "load",
    "normalize",
    "read_state_dict",
    "resize_center_crop",
    "torchvision_keys",
]
