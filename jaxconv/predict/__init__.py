"""Inference: `Predictor` (top-k labels from arrays or image files) and its CLI.

- `jaxconv.predict.predictor`: `Predictor` (`from_checkpoint`, `from_torch`), `FilePrediction`.
- `jaxconv.predict.images`: `read_image`, `ImageError` (one clear error per bad file).
- `jaxconv.predict.cli`: the command line (exit status 1 when some file failed):

    `python -m jaxconv.predict --workdir runs/default img1.png img2.png [--top-k 3] [--json]`
"""

from jaxconv import extras

extras.require("train", feature=__name__)

from jaxconv.predict.images import ImageError, read_image
from jaxconv.predict.predictor import FilePrediction, Predictor

__all__ = ["FilePrediction", "ImageError", "Predictor", "read_image"]
