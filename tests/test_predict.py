"""jaxconv.predict: file predictions equal the eval computation; bad files get their own error."""

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image
from sklearn.datasets import load_digits

from jaxconv.data.distortions import normalize
from jaxconv.models import StageNet
from jaxconv.predict import Predictor

MEAN, STD = (0.3058,), (0.3761,)


@pytest.fixture(scope="module")
def predictor_and_model():
    model = StageNet(10, input_shape=(8, 8, 1), rngs=nnx.Rngs(0))
    predictor = Predictor(model, class_names=[str(i) for i in range(10)], image_shape=(8, 8, 1),
                          mean=MEAN, std=STD, batch_size=4)
    return predictor, model


def _digit_images(n):
    # The dataset's scaling: sklearn's 0..16 x 255/16, rounded, uint8.
    return np.round(load_digits().images[:n] * 255 / 16).astype(np.uint8)[..., None]


def test_files_predict_as_eval_does(tmp_path, predictor_and_model):
    predictor, model = predictor_and_model
    images = _digit_images(6)
    paths = []
    for i, img in enumerate(images):
        paths.append(str(tmp_path / f"d{i}.png"))
        Image.fromarray(img[..., 0], mode="L").save(paths[-1])
    want = np.asarray(jax.nn.softmax(model(normalize(images, MEAN, STD))))
    results = predictor.predict_files(paths, top_k=3)
    for res, probs in zip(results, want):
        assert res.error is None
        best = np.argsort(-probs)[:3]
        assert [label for label, _ in res.top_k] == [str(j) for j in best]
        np.testing.assert_allclose([p for _, p in res.top_k], probs[best], rtol=1e-5,
                                   atol=1e-7)
    np.testing.assert_allclose(predictor.probabilities(images), want, rtol=1e-5, atol=1e-7)


def test_bad_files_get_their_own_error(tmp_path, predictor_and_model):
    predictor, _ = predictor_and_model
    good = tmp_path / "good.png"
    Image.fromarray(_digit_images(1)[0, ..., 0], mode="L").save(good)
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((12, 10), np.uint8), mode="L").save(big)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    truncated = tmp_path / "trunc.png"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2 + 10])  # header intact, pixel data cut
    results = predictor.predict_files([str(big), str(good), str(text), str(truncated),
                                       str(tmp_path / "missing.png")])
    errors = [r.error for r in results]
    assert "is 10x12 (WxH), the model expects 8x8" in errors[0]
    assert errors[1] is None and len(results[1].top_k) == 5
    assert "not an image file" in errors[2]
    assert errors[3].startswith(str(truncated)) and "unreadable image" in errors[3]
    assert "no such file" in errors[4]
    assert results[0].to_json()["top_k"] == [] and "error" in results[0].to_json()


def test_array_input_errors(predictor_and_model):
    predictor, _ = predictor_and_model
    with pytest.raises(ValueError, match=r"images must be \(N, 8, 8, 1\)"):
        predictor.probabilities(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="must be uint8"):
        predictor.probabilities(np.zeros((2, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"top_k must be in \[1, 10\]"):
        predictor.predict(np.zeros((1, 8, 8, 1), np.uint8), top_k=11)
