"""jaxconv.predict.images: the resize policies equal PIL's own resize, crop and pad; any image a
person has (a 28x28 digit, a 320x240 photo) predicts, saying what was done to it."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from jaxconv.models import StageNet
from jaxconv.predict import ImageError, Predictor
from jaxconv.predict.cli import format_table
from jaxconv.predict.images import RESIZE_POLICIES, describe, load_image
from jaxconv.predict.predictor import nonfinite_params

BILINEAR = Image.Resampling.BILINEAR


def _photo(tmp_path, mode="RGB", size=(320, 240)):
    """A smooth random picture (W x H = `size`) saved as PNG in PIL `mode`."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (6, 8, 3), np.uint8)
    image = Image.fromarray(small).resize(size, BILINEAR).convert(mode)
    path = tmp_path / f"photo_{mode}_{size[0]}x{size[1]}.png"
    image.save(path)
    return path


def _reference(path, shape, policy):
    """What each policy means, written with PIL's plain `resize` (box = the crop) and NumPy."""
    height, width, channels = shape
    image = Image.open(path).convert("L" if channels == 1 else "RGB")
    w, h = image.size
    if policy == "fit":
        out = np.asarray(image.resize((width, height), BILINEAR))
    elif policy == "crop":  # the largest centred box of the target's aspect ratio
        scale = min(w / width, h / height)
        bw, bh = width * scale, height * scale
        box = ((w - bw) / 2, (h - bh) / 2, (w + bw) / 2, (h + bh) / 2)
        out = np.asarray(image.resize((width, height), BILINEAR, box=box))
    else:  # pad: the whole image inside, centred, black around it
        scale = min(width / w, height / h)
        iw, ih = round(w * scale), round(h * scale)
        inner = np.asarray(image.resize((iw, ih), BILINEAR))
        out = np.zeros((height, width) + inner.shape[2:], np.uint8)
        top, left = (height - ih) // 2, (width - iw) // 2
        out[top:top + ih, left:left + iw] = inner
    return out.reshape(shape)


@pytest.mark.parametrize("policy", ["fit", "crop", "pad"])
@pytest.mark.parametrize("shape", [(8, 8, 1), (32, 32, 3), (28, 20, 1)])
@pytest.mark.parametrize("mode,size", [("RGB", (320, 240)), ("L", (28, 28)),
                                       ("RGBA", (50, 90)), ("P", (7, 5))])
def test_policies_equal_a_pil_reference(tmp_path, policy, shape, mode, size):
    path = _photo(tmp_path, mode, size)
    image, _ = load_image(path, shape, policy)
    assert image.shape == shape and image.dtype == np.uint8
    np.testing.assert_array_equal(image, _reference(path, shape, policy))


def test_none_refuses_another_size_naming_the_flag(tmp_path):
    path = _photo(tmp_path, "L", (28, 28))
    with pytest.raises(ImageError, match=r"image is 28x28 \(WxH\), the model expects 8x8 .*"
                                         r"--resize fit, crop or pad"):
        load_image(path, (8, 8, 1), "none")
    same = _photo(tmp_path, "L", (8, 8))
    image, done = load_image(same, (8, 8, 1), "none")
    np.testing.assert_array_equal(image[..., 0], np.asarray(Image.open(same)))
    assert done == "8x8 gray"
    with pytest.raises(ValueError, match="resize must be one of"):
        load_image(same, (8, 8, 1), "stretch")


def test_descriptions_say_what_was_done():
    assert describe((320, 240, "RGB"), (8, 8, 1), "fit") == "320x240 RGB -> 8x8 gray (fit)"
    assert describe((28, 28, "L"), (8, 8, 1), "crop") == "28x28 gray -> 8x8 gray (crop)"
    assert describe((8, 8, "RGBA"), (8, 8, 1), "pad") == "8x8 RGBA -> 8x8 gray"
    assert describe((32, 32, "L"), (32, 32, 3), "fit") == "32x32 gray -> 32x32 RGB"
    assert describe((32, 32, "RGB"), (32, 32, 3), "none") == "32x32 RGB"


def _predictor(resize="fit", scale=0.3):
    """A digits-shaped `Predictor` with random parameters (`scale` NaN: a diverged model)."""
    model = nnx.eval_shape(lambda: StageNet(10, input_shape=(8, 8, 1), rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    rng = np.random.default_rng(3)
    state = jax.tree.map(lambda s: jnp.asarray(scale * rng.normal(size=s.shape), s.dtype), state)
    return Predictor(nnx.merge(graphdef, state), class_names=[str(i) for i in range(10)],
                     image_shape=(8, 8, 1), mean=(0.3,), std=(0.4,), batch_size=4,
                     resize=resize)


@pytest.fixture(scope="module")
def predictor():
    return _predictor()


def test_a_digit_and_a_photo_predict(tmp_path, predictor):
    digit, photo = _photo(tmp_path, "L", (28, 28)), _photo(tmp_path, "RGB", (320, 240))
    results = predictor.predict_files([str(digit), str(photo)], top_k=3)
    assert [r.error for r in results] == [None, None]
    assert [r.input for r in results] == ["28x28 gray -> 8x8 gray (fit)",
                                          "320x240 RGB -> 8x8 gray (fit)"]
    for result, path in zip(results, (digit, photo)):
        want = predictor.predict(_reference(path, (8, 8, 1), "fit")[None], top_k=3)[0]
        assert result.top_k == want
    rows = format_table(results).splitlines()
    assert rows[0].split() == ["file", "input", "top-1", "top-2", "top-3"]
    assert "320x240 RGB -> 8x8 gray (fit)" in rows[2]
    assert json.loads(json.dumps([r.to_json() for r in results]))[1]["input"] == (
        "320x240 RGB -> 8x8 gray (fit)")


def test_a_nan_model_gives_an_error_not_nan(tmp_path):
    digit = _photo(tmp_path, "L", (8, 8))
    (result,) = _predictor(scale=np.nan).predict_files([str(digit)])
    assert result.top_k == () and "not finite" in result.error
    json.dumps(result.to_json(), allow_nan=False)  # valid JSON


def test_nonfinite_parameters_are_named(predictor):
    model = nnx.merge(predictor.graphdef, predictor.state)
    assert nonfinite_params(model) == []
    kernel = model.stage1.conv.kernel
    kernel.value = kernel.value.at[0, 0, 0, 0].set(jnp.inf)
    assert nonfinite_params(model) == ["stage1/conv/kernel"]


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_bad_batch_size_or_policy(predictor, batch_size):
    model = nnx.merge(predictor.graphdef, predictor.state)
    args = dict(class_names=list("0123456789"), image_shape=(8, 8, 1), mean=(0.3,), std=(0.4,))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        Predictor(model, batch_size=batch_size, **args)
    with pytest.raises(ValueError, match=r"resize must be one of \('fit'"):
        Predictor(model, resize="stretch", **args)
    assert set(RESIZE_POLICIES) == {"fit", "crop", "pad", "none"}
