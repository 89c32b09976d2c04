"""Tests for jaxconv.data's input pipeline: datasets, train/eval iterators, checkpointing."""

import collections
import itertools

import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from jaxconv import data
from jaxconv.data import readers, sources, transforms

MOCK_SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3), "imagenet2012": (224, 224, 3)}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    data.ensure_prepared("digits", path)
    return path


@pytest.fixture(scope="module")
def digits_train(data_dir):
    _, (source,) = sources.open_sources("digits", data_dir, ["train"])
    return readers.load_arrays(source)


def _multiset(images, labels):
    return collections.Counter((im.tobytes(), int(y)) for im, y in zip(images, labels))


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


# ----------------------------------------------------------------------------- datasets


def test_ensure_prepared_digits(data_dir):
    info = data.ensure_prepared("digits", data_dir)
    assert info == data.DatasetInfo(
        name="digits",
        num_classes=10,
        image_shape=(8, 8, 1),
        num_train=1500,
        num_test=297,
        class_names=tuple(str(i) for i in range(10)),
        train_split="train",
        test_split="test",
        mean=(0.3058,),
        std=(0.3761,),
    )


def test_unknown_dataset_lists_valid_names(data_dir):
    with pytest.raises(ValueError, match="cifar10.*digits.*imagenet2012.*mnist"):
        data.ensure_prepared("svhn", data_dir)
    with pytest.raises(ValueError, match="Unknown dataset 'svhn'"):
        data.train_iterator("svhn", data_dir, global_batch_size=8, seed=0)


def test_unprepared_builtin_names_dir_and_command(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        data.ensure_prepared("mnist", tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message
    assert (
        f"pip install 'jaxconv[prepare]' && python -m jaxconv.data.prepare --dataset mnist "
        f"--data_dir {tmp_path}" in message
    )
    with pytest.raises(FileNotFoundError, match="--manual_dir"):
        data.ensure_prepared("imagenet2012", tmp_path)


@pytest.mark.parametrize("name", sorted(MOCK_SHAPES))
def test_builtins_under_mock_data(name, tmp_path):
    with tfds.testing.mock_data(num_examples=10):
        info = data.ensure_prepared(name, tmp_path)
        assert (info.num_train, info.num_test) == (10, 10)
        assert info.image_shape == MOCK_SHAPES[name]
        assert len(info.class_names) == info.num_classes == (1000 if "imagenet" in name else 10)
        assert len(info.mean) == len(info.std) == info.image_shape[-1]
        size = 32 if name == "imagenet2012" else None
        shape = (size, size, 3) if size else info.image_shape
        batch = next(
            data.train_iterator(name, tmp_path, global_batch_size=4, seed=0, image_size=size)
        )
        assert batch["image"].shape == (4, *shape) and batch["image"].dtype == np.uint8
        assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
        assert ((batch["label"] >= 0) & (batch["label"] < info.num_classes)).all()
        batches = list(data.eval_batches(name, tmp_path, batch_size=4, image_size=size))
        assert [b["mask"].sum() for b in batches] == [4, 4, 2]
        assert all(b["image"].shape == (4, *shape) for b in batches)


# ------------------------------------------------------------------------------- train


def test_train_batches_shapes_and_one_epoch_covers_split(data_dir, digits_train):
    it = data.train_iterator("digits", data_dir, global_batch_size=100, seed=0, num_epochs=1)
    batches = list(it)
    assert len(batches) == 15
    for b in batches:
        assert b["image"].shape == (100, 8, 8, 1) and b["image"].dtype == np.uint8
        assert b["label"].shape == (100,) and b["label"].dtype == np.int32
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    assert _multiset(images, labels) == _multiset(*digits_train)


def test_train_reshuffles_each_epoch_and_depends_on_seed(data_dir):
    def epochs(seed):
        it = data.train_iterator("digits", data_dir, global_batch_size=500, seed=seed)
        return [np.concatenate([b["label"] for b in _take(it, 3)]) for _ in range(2)]

    first, second = epochs(0)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first), np.sort(second))
    np.testing.assert_array_equal(epochs(0)[0], first)  # Deterministic given the seed.
    assert not np.array_equal(epochs(1)[0], first)


def test_finite_epochs_drop_remainder(data_dir):
    it = data.train_iterator("digits", data_dir, global_batch_size=128, seed=0, num_epochs=2)
    batches = list(it)
    assert len(batches) == 3000 // 128
    assert all(len(b["label"]) == 128 for b in batches)


@pytest.mark.parametrize("shard_count", [2, 3])
def test_shards_partition_each_global_batch(data_dir, shard_count):
    kwargs = dict(global_batch_size=12, seed=3, num_epochs=1)
    whole = list(data.train_iterator("digits", data_dir, shard_index=0, shard_count=1, **kwargs))
    shards = [
        list(
            data.train_iterator(
                "digits", data_dir, shard_index=i, shard_count=shard_count, **kwargs
            )
        )
        for i in range(shard_count)
    ]
    assert all(len(s) == len(whole) == 1500 // 12 for s in shards)
    for k, full in enumerate(whole):
        parts = [s[k] for s in shards]
        assert all(p["image"].shape[0] == 12 // shard_count for p in parts)
        union = _multiset(
            np.concatenate([p["image"] for p in parts]), np.concatenate([p["label"] for p in parts])
        )
        assert union == _multiset(full["image"], full["label"])


def test_cached_and_per_example_paths_agree(data_dir):
    kwargs = dict(global_batch_size=32, seed=5, shard_index=1, shard_count=2)
    cached = data.train_iterator("digits", data_dir, cache=True, **kwargs)
    per_example = data.train_iterator("digits", data_dir, cache=False, read_threads=0, **kwargs)
    _assert_batches_equal(_take(cached, 60), _take(per_example, 60))  # Crosses epoch 1 -> 2.


def test_bad_train_arguments(data_dir):
    def make(**kw):
        args = dict(global_batch_size=8, seed=0) | kw
        return data.train_iterator("digits", data_dir, **args)

    with pytest.raises(ValueError, match="multiple of shard_count=3"):
        make(global_batch_size=8, shard_index=0, shard_count=3)
    with pytest.raises(ValueError, match="shard_index < shard_count"):
        make(shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="both shard_index and shard_count"):
        make(shard_index=0)
    with pytest.raises(ValueError, match="num_epochs"):
        make(num_epochs=0)
    with pytest.raises(ValueError, match="only for variable-size"):
        make(image_size=16)
    with pytest.raises(ValueError, match="positive multiple"):
        make(global_batch_size=0)


# --------------------------------------------------------------------------- checkpoints


def test_get_set_state_resumes_exactly(data_dir):
    def make():
        return data.train_iterator("digits", data_dir, global_batch_size=64, seed=7)

    it = make()
    _take(it, 30)  # Past the first epoch boundary (1500 / 64 = 23.4 batches).
    state = it.get_state()
    expected = _take(it, 5)
    resumed = make()
    resumed.set_state(state)
    _assert_batches_equal(_take(resumed, 5), expected)


def test_orbax_checkpoint_roundtrip(data_dir, tmp_path):
    def make():
        return data.train_iterator("digits", data_dir, global_batch_size=50, seed=1)

    it = make()
    _take(it, 11)
    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=True)
    with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as manager:
        tree = {"w": np.arange(4.0)}
        manager.save(
            11,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree), data=data.iterator_save_args(it)
            ),
        )
        expected = _take(it, 4)  # Moves on while the state may still be written.
        manager.wait_until_finished()

    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        fresh = make()
        restored = manager.restore(
            manager.latest_step(),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(tree), data=data.iterator_restore_args(fresh)
            ),
        )
    np.testing.assert_array_equal(restored["state"]["w"], tree["w"])
    _assert_batches_equal(_take(restored["data"], 4), expected)


# -------------------------------------------------------------------------------- eval


@pytest.mark.parametrize("cache", [True, False])
def test_eval_covers_split_once_with_padding(data_dir, cache):
    batches = data.eval_batches("digits", data_dir, batch_size=64, cache=cache)
    assert len(batches) == 5 and batches.num_examples == 297
    passes = [list(batches), list(batches)]  # Re-iterable: same batches each pass.
    _assert_batches_equal(*passes)
    got = passes[0]
    assert [b["mask"].sum() for b in got] == [64, 64, 64, 64, 41]
    last = got[-1]
    assert not last["image"][41:].any() and not last["label"][41:].any()
    assert last["mask"].dtype == bool and last["label"].dtype == np.int32
    _, (source,) = sources.open_sources("digits", data_dir, ["test"])
    images = np.concatenate([b["image"][b["mask"]] for b in got])
    labels = np.concatenate([b["label"][b["mask"]] for b in got])
    np.testing.assert_array_equal(images, readers.load_arrays(source)[0])  # In split order.
    np.testing.assert_array_equal(labels, readers.load_arrays(source)[1])


def test_sharded_eval_covers_split_once(data_dir):
    shards = [
        list(data.eval_batches("digits", data_dir, batch_size=40, shard_index=i, shard_count=4))
        for i in range(4)
    ]
    assert {len(s) for s in shards} == {8}  # ceil(297 / 40) on every process.
    real = [
        (im.tobytes(), int(y))
        for b in itertools.chain(*shards)
        for im, y, m in zip(b["image"], b["label"], b["mask"])
        if m
    ]
    _, (source,) = sources.open_sources("digits", data_dir, ["test"])
    assert collections.Counter(real) == _multiset(*readers.load_arrays(source))
    assert len(real) == 297
    with pytest.raises(ValueError, match="multiple of shard_count=4"):
        data.eval_batches("digits", data_dir, batch_size=10, shard_index=0, shard_count=4)


def test_eval_other_split_and_unknown_split(data_dir):
    batches = data.eval_batches("digits", data_dir, split="train", batch_size=500)
    assert len(batches) == 3 and batches.num_examples == 1500
    with pytest.raises(ValueError, match="Unknown split"):
        data.eval_batches("digits", data_dir, split="validation", batch_size=8)


# -------------------------------------------------------------- imagenet (host resizing)


def test_imagenet_train_and_eval_under_mock(tmp_path):
    crop = data.ResizeCrop(image_size=48, train_mode="resize_random_crop", resize_size=64)
    with tfds.testing.mock_data(num_examples=12):
        it = data.train_iterator("imagenet2012", tmp_path, global_batch_size=6, seed=0, crop=crop)
        state = it.get_state()
        first = _take(it, 2)
        assert first[0]["image"].shape == (6, 48, 48, 3)
        it.set_state(state)
        _assert_batches_equal(_take(it, 2), first)  # Random crops are reproducible.
        eval_it = data.eval_batches("imagenet2012", tmp_path, batch_size=8, image_size=40)
        assert [b["image"].shape for b in eval_it] == [(8, 40, 40, 3)] * 2
        with pytest.raises(ValueError, match="fixed-size"):
            data.train_iterator("imagenet2012", tmp_path, global_batch_size=6, seed=0, cache=True)


def test_center_crop_and_random_resized_crop_closed_forms():
    image = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    crop = transforms.ResizeCrop(image_size=10, resize_size=10)
    np.testing.assert_array_equal(transforms.center_crop(image, crop), image[:, 5:15])
    square = image[:, :10]
    whole = transforms.ResizeCrop(image_size=10, area_range=(1, 1), aspect_ratio_range=(1, 1))
    out = transforms.random_crop(square, whole, np.random.default_rng(0))
    np.testing.assert_array_equal(out, square)
    for mode in transforms.TRAIN_MODES:
        crop = transforms.ResizeCrop(image_size=7, train_mode=mode)
        assert transforms.random_crop(image, crop, np.random.default_rng(1)).shape == (7, 7, 3)
    gray = np.zeros((30, 17, 1), np.uint8)
    assert transforms.center_crop(gray, transforms.ResizeCrop(image_size=8)).shape == (8, 8, 1)
    with pytest.raises(ValueError, match="train_mode"):
        transforms.ResizeCrop(train_mode="foo")


# ----------------------------------------------------------------------------- prepare


def test_prepare_cli_function(tmp_path):
    from jaxconv.data import prepare

    assert prepare.prepare("digits", tmp_path).num_train == 1500
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install 'jaxconv\[prepare\]'"):
            prepare.prepare("mnist", tmp_path)
