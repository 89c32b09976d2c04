"""jaxconv.transfer.torch_import: logits equal torchvision-layout torch nets; safe reads; errors.

The torch networks are torchvision's AlexNet and VGG rebuilt here in plain `torch.nn`
(torchvision itself is not a dependency): same module order, hence the same state-dict keys.
"""

import logging
import os
import pickle
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from jaxconv.models import VGG, AlexNet
from jaxconv.pretrained import (
    WeightImportError,
    from_torch,
    import_state_dict,
    read_state_dict,
    torchvision_keys,
)

torch = pytest.importorskip("torch")
nn = torch.nn

TINY = dict(channels=(4, 8, 8, 16, 16), hidden=32)  # VGG layout at a test-friendly width.
VGG_CFGS = {11: [1, "M", 2, "M", 3, 3, "M", 4, 4, "M", 5, 5, "M"],
            16: [1, 1, "M", 2, 2, "M", 3, 3, 3, "M", 4, 4, 4, "M", 5, 5, 5, "M"]}
ATOL = 1e-4


class TorchvisionLike(nn.Module):
    """torchvision's AlexNet / VGG structure: features -> avgpool -> flatten -> classifier."""

    def __init__(self, features, pool, classifier):
        super().__init__()
        self.features, self.avgpool, self.classifier = features, nn.AdaptiveAvgPool2d(pool), \
            classifier

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def torch_alexnet(num_classes=1000):
    """torchvision.models.alexnet, module for module."""
    features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2))
    classifier = nn.Sequential(
        nn.Dropout(), nn.Linear(256 * 36, 4096), nn.ReLU(True),
        nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True), nn.Linear(4096, num_classes))
    return TorchvisionLike(features, 6, classifier)


def torch_vgg(depth, num_classes, channels, hidden):
    """torchvision.models.vgg11 / vgg16 (no batch norm), stage widths `channels`."""
    layers, cin = [], 3
    for v in VGG_CFGS[depth]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, channels[v - 1], 3, padding=1), nn.ReLU(True)]
            cin = channels[v - 1]
    classifier = nn.Sequential(
        nn.Linear(cin * 49, hidden), nn.ReLU(True), nn.Dropout(),
        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(), nn.Linear(hidden, num_classes))
    return TorchvisionLike(nn.Sequential(*layers), 7, classifier)


def _numpy_state(net):
    return {k: v.numpy() for k, v in net.state_dict().items()}


def _assert_same_logits(net, model, sizes):
    rng = np.random.default_rng(0)
    for h, w in sizes:
        x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            want = net.eval()(torch.from_numpy(x)).numpy()
        got = np.asarray(nnx.jit(lambda m, v: m(v))(model, jnp.asarray(x.transpose(0, 2, 3, 1))))
        assert np.abs(want).max() > 1e-2  # a meaningful comparison, not two near-zero outputs
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL, err_msg=f"input {h}x{w}")


@pytest.fixture
def alexnet(tmp_path):
    """A random full-size torch AlexNet (10 classes) and its state dict saved as .pth."""
    torch.manual_seed(0)
    net = torch_alexnet(num_classes=10)
    torch.save(net.state_dict(), tmp_path / "alexnet.pth")
    return net, tmp_path / "alexnet.pth"


@pytest.mark.slow
def test_alexnet_logits_match_torch(alexnet):
    net, path = alexnet
    model = from_torch("alexnet", path, num_classes=10)
    assert isinstance(model, AlexNet) and model.variant == "torchvision"
    # 64x64 ends at 1x1 before the 6x6 pool; 300x260 at 8x7 (overlapping, uneven bins).
    _assert_same_logits(net, model, [(64, 64), (300, 260)])


@pytest.mark.parametrize("depth, suffix", [(11, ".safetensors"), (16, ".pth")])
def test_vgg_logits_match_torch(tmp_path, depth, suffix):
    torch.manual_seed(depth)
    net = torch_vgg(depth, 5, **TINY)
    path = tmp_path / f"vgg{suffix}"
    if suffix == ".pth":
        torch.save(net.state_dict(), path)
    else:
        save_file(_numpy_state(net), path)
    model = from_torch(f"vgg{depth}", path, num_classes=5, **TINY)
    assert isinstance(model, VGG) and model.depth == depth
    # 32x32 reaches 1x1 before the 7x7 pool; 290x250 reaches 9x7 (uneven bins, rows != cols).
    _assert_same_logits(net, model, [(32, 32), (290, 250)] if depth == 11 else [(64, 48)])


def test_torchvision_keys_are_torchvisions_indices():
    def keys(make):
        return torchvision_keys(nnx.eval_shape(make))

    assert keys(lambda: AlexNet(variant="torchvision", rngs=nnx.Rngs(0))) == {
        "features.0": "conv1", "features.3": "conv2", "features.6": "conv3",
        "features.8": "conv4", "features.10": "conv5",
        "classifier.1": "fc6", "classifier.4": "fc7", "classifier.6": "fc8"}
    head = {"classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "fc8"}
    vgg11 = dict(zip([0, 3, 6, 8, 11, 13, 16, 18], ["1_1", "2_1", "3_1", "3_2", "4_1", "4_2",
                                                      "5_1", "5_2"]))
    assert keys(lambda: VGG(depth=11, rngs=nnx.Rngs(0))) == {
        **{f"features.{i}": f"conv{n}" for i, n in vgg11.items()}, **head}
    vgg16 = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert list(keys(lambda: VGG(depth=16, rngs=nnx.Rngs(0)))) == \
        [f"features.{i}" for i in vgg16] + list(head)
    with pytest.raises(ValueError, match="no torchvision layout"):
        keys(lambda: AlexNet(rngs=nnx.Rngs(0)))


def test_new_head_when_num_classes_differs(tmp_path, caplog):
    torch.manual_seed(1)
    net = torch_vgg(11, 5, **TINY)
    state = _numpy_state(net)
    model, report = import_state_dict("vgg11", state, num_classes=3, seed=0, **TINY)
    assert report.initialized == ("fc8/kernel", "fc8/bias")
    assert report.checkpoint_classes == 5 and len(report.loaded) == len(state) - 2
    assert ("features.0.weight", "conv1_1/kernel") in report.loaded
    np.testing.assert_array_equal(model.conv1_1.kernel[...],
                                  state["features.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.fc7.kernel[...], state["classifier.3.weight"].T)
    # The new head comes from the seed alone (N(0, 0.01) kernel, zero bias), not the file.
    other = {k: v + 1 for k, v in state.items()}
    same_seed, _ = import_state_dict("vgg11", other, num_classes=3, seed=0, **TINY)
    new_seed, _ = import_state_dict("vgg11", other, num_classes=3, seed=1, **TINY)
    np.testing.assert_array_equal(model.fc8.kernel[...], same_seed.fc8.kernel[...])
    assert not np.array_equal(model.fc8.kernel[...], new_seed.fc8.kernel[...])
    assert model.fc8.kernel.shape == (32, 3) and 0.005 < np.std(model.fc8.kernel[...]) < 0.02
    np.testing.assert_array_equal(model.fc8.bias[...], 0.0)
    assert model.drop6.deterministic  # eval mode

    save_file(state, tmp_path / "vgg.safetensors")
    with caplog.at_level(logging.INFO, logger="jaxconv.transfer"):
        from_torch("vgg11", tmp_path / "vgg.safetensors", num_classes=3, **TINY)
    assert "freshly initialised: fc8/kernel, fc8/bias (checkpoint has 5 classes)" in caplog.text


@pytest.fixture(scope="module")
def tiny_state():
    torch.manual_seed(2)
    return _numpy_state(torch_vgg(11, 5, **TINY))


def test_unknown_name_lists_valid(tiny_state):
    with pytest.raises(ValueError, match=r"'resnet50'.*\['alexnet', 'vgg11', 'vgg16'\]"):
        import_state_dict("resnet50", tiny_state)
    with pytest.raises(ValueError, match="valid"):
        from_torch("resnet50", "does-not-matter.pth")


def test_missing_and_unexpected_keys_named(tiny_state):
    state = dict(tiny_state)
    del state["features.3.bias"]
    state["features.1.running_mean"] = np.zeros(4, np.float32)
    with pytest.raises(WeightImportError, match=r"missing \['features.3.bias'\], "
                                                r"unexpected \['features.1.running_mean'\]"):
        import_state_dict("vgg11", state, 5, **TINY)


def test_shape_mismatch_names_key_and_shapes(tiny_state):
    with pytest.raises(WeightImportError, match=r"features.0.weight: checkpoint \(4, 3, 3, 3\), "
                                                r"model expects \(64, 3, 3, 3\)"):
        import_state_dict("vgg11", tiny_state, 5)  # full width
    state = dict(tiny_state, **{"classifier.3.weight": np.zeros((32, 31), np.float32)})
    with pytest.raises(WeightImportError, match=r"classifier.3.weight.*\(32, 31\).*\(32, 32\)"):
        import_state_dict("vgg11", state, 5, **TINY)


def test_unreadable_files_name_path_and_reason(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file at .*missing.pth"):
        read_state_dict(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightImportError, match=r"cannot read .*junk.pth as a PyTorch state"):
        read_state_dict(tmp_path / "junk.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(WeightImportError, match=r"cannot read .*junk.safetensors as safetens"):
        read_state_dict(tmp_path / "junk.safetensors")
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(WeightImportError, match=r"unknown extension '.npz'"):
        read_state_dict(tmp_path / "weights.npz")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(WeightImportError, match="holds a list, not a state dict"):
        read_state_dict(tmp_path / "list.pth")
    torch.save({"a": torch.zeros(2), "step": 3}, tmp_path / "mixed.pth")
    with pytest.raises(WeightImportError, match=r"entries \['step'\] are not tensors"):
        read_state_dict(tmp_path / "mixed.pth")


def test_legacy_pth_format_reads(tmp_path, tiny_state):
    # torchvision's older files (alexnet-owt-7be5be79.pth) predate torch's zip format.
    tensors = {k: torch.from_numpy(v) for k, v in tiny_state.items()}
    torch.save(tensors, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    state = read_state_dict(tmp_path / "legacy.pth")
    assert state.keys() == tiny_state.keys()
    np.testing.assert_array_equal(state["classifier.0.weight"], tiny_state["classifier.0.weight"])


class _MakesDirectory:
    """Unpickling this calls os.mkdir(path): a stand-in for any code a pickle can run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_not_executed(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"features.0.weight": _MakesDirectory(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(WeightImportError, match=r"cannot read .*evil.pth.*never unpickles"):
        from_torch("vgg11", path)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_MakesDirectory(marker)))  # the payload does work when unpickled
    assert marker.is_dir()


def test_safetensors_import_needs_no_torch(tmp_path, tiny_state, monkeypatch):
    save_file(tiny_state, tmp_path / "vgg.safetensors")
    torch.save({}, tmp_path / "vgg.pth")
    monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` now fails
    model = from_torch("vgg11", tmp_path / "vgg.safetensors", 5, **TINY)
    np.testing.assert_array_equal(model.fc8.bias[...], tiny_state["classifier.6.bias"])
    with pytest.raises(ImportError, match=r"vgg.pth needs PyTorch .*or convert the file"):
        from_torch("vgg11", tmp_path / "vgg.pth", 5, **TINY)
