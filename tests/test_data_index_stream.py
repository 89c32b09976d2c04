"""jaxconv.data.index_stream against a per-position Python loop over the stated formula."""

import pickle
import threading

import numpy as np
import pytest

from jaxconv.data.index_stream import ShardPositions, ShuffledStream


def _reference(n, seed, positions):
    """Position p -> permutation(p // n)[p % n], one position at a time."""
    out = []
    for p in positions:
        rng = np.random.default_rng(np.random.SeedSequence([seed, p // n]))
        out.append(rng.permutation(n)[p % n])
    return np.array(out)


@pytest.mark.parametrize("n, seed", [(1, 0), (7, 0), (10, 3), (1797, 12345)])
def test_matches_reference_within_across_and_over_several_epochs(n, seed):
    stream = ShuffledStream(n, seed)
    for positions in (np.arange(0, n), np.arange(n - 3, n + 4), np.arange(2 * n, 5 * n + 2),
                      np.array([9 * n + 1, 0, 3 * n]) % (10 * n)):
        positions = positions[positions >= 0]
        np.testing.assert_array_equal(stream(positions), _reference(n, seed, positions))
        assert [stream.index(int(p)) for p in positions] == list(_reference(n, seed, positions))


def test_each_epoch_is_a_permutation_and_epochs_and_seeds_differ():
    n = 50
    a, b = ShuffledStream(n, 0), ShuffledStream(n, 1)
    e0, e1 = a(np.arange(n)), a(np.arange(n, 2 * n))
    assert sorted(e0) == sorted(e1) == list(range(n))
    assert not np.array_equal(e0, e1)
    assert not np.array_equal(e0, b(np.arange(n)))


def test_shape_dtype_empty_and_more_epochs_than_the_cache():
    stream = ShuffledStream(5, 0)
    grid = np.arange(40).reshape(4, 10)  # 8 epochs: more than the 4 cached ones.
    out = stream(grid)
    assert out.shape == (4, 10) and out.dtype == np.int64
    np.testing.assert_array_equal(out.ravel(), _reference(5, 0, range(40)))
    assert stream(np.zeros((0, 3), np.int32)).shape == (0, 3)


def test_pickles_and_is_shared_by_threads():
    stream = ShuffledStream(100, 7)
    expected = _reference(100, 7, range(1000))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(stream))(np.arange(1000)), expected)
    results = [None] * 8

    def work(i):
        results[i] = [stream(np.arange(k * 50, (k + 1) * 50)) for k in range(i, 20, 2)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, got in enumerate(results):
        for k, x in zip(range(i, 20, 2), got):
            np.testing.assert_array_equal(x, expected[k * 50:(k + 1) * 50])


@pytest.mark.parametrize("shard_count, local_batch", [(1, 4), (2, 3), (3, 5)])
def test_shard_positions_partition_each_global_batch(shard_count, local_batch):
    global_batch = shard_count * local_batch
    for k in (0, 1, 17):
        shards = [ShardPositions(local_batch, s, shard_count)(k) for s in range(shard_count)]
        assert all(x.shape == (local_batch,) and x.dtype == np.int64 for x in shards)
        np.testing.assert_array_equal(
            np.sort(np.concatenate(shards)),
            np.arange(k * global_batch, (k + 1) * global_batch))
        np.testing.assert_array_equal(shards[-1], np.arange(
            k * global_batch + shard_count - 1, (k + 1) * global_batch, shard_count))


@pytest.mark.parametrize("args, match", [
    ((0, 0), "num_examples must be >= 1, got 0"),
    ((5.0, 0), "num_examples must be an int, got 5.0"),
    ((True, 0), "num_examples must be an int, got True"),
    ((5, -1), "seed must be a non-negative int, got -1"),
    ((5, "0"), "seed must be a non-negative int, got '0'"),
])
def test_bad_stream_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        ShuffledStream(*args)


def test_bad_positions_and_shards():
    stream = ShuffledStream(5, 0)
    with pytest.raises(ValueError, match="positions must be integers, got dtype float64"):
        stream(np.array([1.0]))
    with pytest.raises(ValueError, match="positions must be >= 0, got -2"):
        stream(np.array([3, -2]))
    with pytest.raises(ValueError, match="position must be >= 0, got -1"):
        stream.index(-1)
    with pytest.raises(ValueError, match="shard_index < shard_count"):
        ShardPositions(4, 2, 2)
    with pytest.raises(ValueError, match="local_batch >= 1"):
        ShardPositions(0, 0, 1)
