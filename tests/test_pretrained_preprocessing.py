"""jaxconv.transfer.preprocessing: closed forms, crop geometry, resize against torch's."""

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxconv.transfer.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    center_crop,
    imagenet_eval,
    imagenet_eval_batch,
    normalize,
    resize_center_crop,
    resize_shorter_side,
)

MEAN, STD = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)


def test_constant_image_closed_form():
    out = imagenet_eval(np.full((300, 400, 3), 128, np.uint8))
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.broadcast_to((128 / 255 - MEAN) / STD, out.shape),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape, resized", [((512, 700, 3), (256, 350, 3)),
                                            ((700, 512, 3), (350, 256, 3)),
                                            ((100, 150, 3), (256, 384, 3))])
def test_resize_shorter_side_sizes(shape, resized):
    # torchvision: the longer side is int(256 * long / short): 350 (=350.0), 384 (=384.0).
    assert resize_shorter_side(np.zeros(shape, np.uint8)).shape == resized


def test_resize_is_identity_at_size():
    image = np.random.default_rng(0).integers(0, 256, (256, 300, 3), np.uint8)
    assert resize_shorter_side(image) is image


def test_center_crop_offsets_on_arange():
    image = np.arange(11 * 14).reshape(11, 14)
    # offsets round((11 - 4) / 2) = round(3.5) = 4 and round((14 - 4) / 2) = 5.
    np.testing.assert_array_equal(center_crop(image, 4), image[4:8, 5:9])
    np.testing.assert_array_equal(center_crop(image[:10, :12], 4), image[3:7, 4:8])
    with pytest.raises(ValueError, match=r"cannot center-crop 12x12 .* \(11, 14\)"):
        center_crop(image, 12)


def test_pipeline_crops_the_center_square():
    # 256x320 needs no resize; the central 224x224 starts at row 16, column 48.
    image = np.zeros((256, 320, 3), np.uint8)
    image[16:240, 48:272] = 255
    out = imagenet_eval(image)
    np.testing.assert_allclose(out, np.broadcast_to((1 - MEAN) / STD, out.shape), atol=1e-6)
    assert resize_center_crop(image).dtype == np.uint8


def test_resize_matches_torch_antialiased_bilinear():
    torch = pytest.importorskip("torch")
    image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), np.uint8)
    ours = resize_shorter_side(image).astype(np.float32)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    theirs = torch.nn.functional.interpolate(x, size=(256, 341), mode="bilinear",
                                             antialias=True, align_corners=False)
    theirs = theirs[0].permute(1, 2, 0).numpy()
    assert ours.shape == theirs.shape
    # Pillow rounds to uint8 and uses fixed-point weights: within one grey level.
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1.0)
    assert np.abs(ours - theirs).mean() < 0.5


def test_inputs_gray_pil_and_errors():
    gray = np.full((260, 260), 50, np.uint8)
    want = imagenet_eval(np.repeat(gray[..., None], 3, axis=-1))
    np.testing.assert_array_equal(imagenet_eval(gray), want)
    np.testing.assert_array_equal(imagenet_eval(gray[..., None]), want)
    np.testing.assert_array_equal(imagenet_eval(Image.fromarray(gray)), want)
    batch = imagenet_eval_batch([gray, gray], resize_size=64, crop_size=32)
    assert batch.shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="uint8"):
        imagenet_eval(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"got shape \(64, 64, 4\)"):
        imagenet_eval(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match="crop_size 300 must be <= resize_size 256"):
        imagenet_eval(gray, crop_size=300)


def test_normalize_numpy_and_jax():
    x = np.array([[[0, 255, 51]]], np.uint8)
    want = (np.array([0, 1, 0.2]) - MEAN) / STD
    np.testing.assert_allclose(normalize(x)[0, 0], want, atol=1e-6)
    y = normalize(jnp.asarray(x))
    assert isinstance(y, jnp.ndarray) and y.dtype == jnp.float32
    np.testing.assert_allclose(y[0, 0], want, atol=1e-6)
