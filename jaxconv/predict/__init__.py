"""Inference: `Predictor` (top-k labels from arrays or image files) and its CLI.

    python -m jaxconv.predict --workdir runs/default img1.png img2.png [--top-k 3] [--json]
"""

from jaxconv.predict.images import ImageError, read_image
from jaxconv.predict.predictor import FilePrediction, Predictor

__all__ = ["FilePrediction", "ImageError", "Predictor", "read_image"]
