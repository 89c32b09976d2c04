"""jaxconv.predict: file predictions equal the eval computation; bad files get their own error."""

import json

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image
from sklearn.datasets import load_digits

from jaxconv import data, pretrained
from jaxconv.data.distortions import normalize
from jaxconv.data.transforms import center_crop
from jaxconv.models import StageNet
from jaxconv.predict import ImageError, Predictor
from jaxconv.predict.images import load_image
from jaxconv.runs import RunInfo, load_trained_model
from jaxconv.training.state import split_model
from jaxconv.transfer import torch_import

pytestmark = pytest.mark.slow  # trains or starts processes: the full suite only

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
    assert errors[0] is None and results[0].input == "10x12 gray -> 8x8 gray (fit)"
    with pytest.raises(ImageError, match=r"is 10x12 \(WxH\), the model expects 8x8.*--resize"):
        load_image(big, (8, 8, 1), "none")
    assert errors[1] is None and len(results[1].top_k) == 5
    assert "not an image file" in errors[2]
    assert errors[3].startswith(str(truncated)) and "unreadable image" in errors[3]
    assert "no such file" in errors[4]
    assert results[2].to_json()["top_k"] == [] and "error" in results[2].to_json()


def test_array_input_errors(predictor_and_model):
    predictor, _ = predictor_and_model
    with pytest.raises(ValueError, match=r"images must be \(N, 8, 8, 1\)"):
        predictor.probabilities(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="must be uint8"):
        predictor.probabilities(np.zeros((2, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"top_k must be in \[1, 10\]"):
        predictor.predict(np.zeros((1, 8, 8, 1), np.uint8), top_k=11)


def _eval_probabilities(workdir, images):
    """Softmax of the logits the trainer's eval path computes (`eval_step`'s two lines)."""
    model, run = load_trained_model(workdir)
    model_def, params = split_model(model)
    images = data.normalize(images, run.dataset.mean, run.dataset.std)
    return np.asarray(jax.nn.softmax(model_def.apply(params, images, train=False)))


def _test_split(digits_dir):
    """The digits test split as the eval pipeline yields it: uint8 images, int labels."""
    (batch,) = data.eval_batches("digits", digits_dir, batch_size=297)
    return batch["image"], batch["label"]


@pytest.mark.slow
def test_from_checkpoint_predicts_as_eval(trained_run, digits_dir):
    """Same probabilities as the eval path, and the test accuracy metrics.json reports."""
    predictor = Predictor.from_checkpoint(trained_run, batch_size=100)
    assert predictor.class_names == tuple(str(i) for i in range(10))
    assert predictor.image_shape == (8, 8, 1) and predictor.resize == "fit"
    images, labels = _test_split(digits_dir)
    probs = predictor.probabilities(images)
    want = _eval_probabilities(trained_run, images)
    np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(probs.argmax(-1), want.argmax(-1))
    with open(f"{trained_run}/metrics.json") as f:
        accuracy = json.load(f)["test_accuracy"]
    assert np.sum(probs.argmax(-1) == labels) == round(accuracy * len(labels))
    assert len(predictor.predict(images[:2])[0]) == 5  # The default top-k.


def test_from_checkpoint_without_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run.json not found"):
        Predictor.from_checkpoint(tmp_path)


def _rgb_model():
    """A small classifier of 224x224 RGB images (3 classes)."""
    return StageNet(3, input_shape=(224, 224, 3), features=(2,), lcn_kernel_size=None,
                    pool_window=8, rngs=nnx.Rngs(0))


def _rgb_file(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    return rgb, str(tmp_path / "photo.png")


def test_imagenet_runs_get_the_eval_crop(tmp_path):
    """A run on a variable-size dataset: files get the eval pipeline's resize + central crop."""
    config = {"dataset": "imagenet2012", "image_size": 0, "train_crop": "random_resized_crop",
              "crop_resize_size": 0}
    info = data.DatasetInfo("imagenet2012", 3, (224, 224, 3), 1, 1, ("a", "b", "c"), "train",
                            "validation", mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    model = _rgb_model()
    predictor = Predictor.for_run(model, RunInfo("stagenet", {}, info, config))
    rgb, path = _rgb_file(tmp_path)
    cropped = center_crop(rgb, data.ResizeCrop(image_size=224))
    want = np.asarray(jax.nn.softmax(model(normalize(cropped[None], info.mean, info.std))))
    np.testing.assert_allclose(predictor.probabilities(predictor.load(path)[None]), want,
                               rtol=1e-5, atol=1e-7)


def test_from_torch_uses_imagenet_eval_preprocessing(tmp_path, monkeypatch):
    """Any-size RGB files are resized, cropped and normalized as `pretrained.imagenet_eval`."""
    model = _rgb_model()
    calls = []

    def fake_from_torch(name, path, num_classes, **kwargs):
        calls.append((name, path, num_classes, kwargs))
        return model

    monkeypatch.setattr(torch_import, "from_torch", fake_from_torch)
    predictor = Predictor.from_torch("alexnet", "w.safetensors", class_names=["a", "b", "c"],
                                     dropout=0.0)
    assert calls == [("alexnet", "w.safetensors", 3, {"dropout": 0.0, "dtype": None})]
    rgb, path = _rgb_file(tmp_path)
    (result,) = predictor.predict_files([path])
    want = np.asarray(jax.nn.softmax(model(pretrained.imagenet_eval(rgb)[None])))[0]
    assert [label for label, _ in result.top_k] == [["a", "b", "c"][j] for j in (-want).argsort()]
    np.testing.assert_allclose(sorted(p for _, p in result.top_k), sorted(want), rtol=1e-5)
