"""Several seeds in one program: ``config.num_seeds = K`` trains K independent replicas.

Replica ``k`` is the 1-seed run of ``config.seed + k`` (`replica_configs`): its own
parameter init, dropout and distortion keys (`jaxconv.training.state.root_keys`) and data
order (its own grain iterator, shuffled with that seed). Their `TrainState` s are stacked
along a new leading axis of size K (`stack`; every leaf, the step included), and the pure
steps of `jaxconv.training.steps` are vectorized over it with ``jax.vmap`` (`vmap_steps`):
one jitted train step takes the K batches stacked as ``(K, B, H, W, C)`` (sharded along
``B`` over the mesh, `jaxconv.training.parallel`), one jitted eval step evaluates the K
replicas on the same test batch. Metrics come out with a leading K axis.

`ReplicaIterator` feeds the stacked batches and checkpoints the K iterators' positions in
one JSON file per process (grain's checkpoint handler calls its ``get_state`` /
``set_state``), so that a K-seed run resumes exactly. `summarize_eval` and `seed_summary`
turn per-seed figures into what the logs and ``metrics.json`` hold: the mean over the seeds
under the 1-seed run's names, each seed's values beside it (``<name>_seeds`` lists in the
history, ``"seeds"`` records in ``metrics.json``).

``num_seeds = 1`` goes through none of this: the state, steps and iterator are the 1-seed
run's own, bit for bit.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from jaxconv.runs import SEEDS_SUFFIX

# The per-seed figures of metrics.json's "seeds" records (named as the top-level means).
SEED_FIGURES = ("test_loss", "test_accuracy", "train_loss", "train_accuracy")


def seeds(config: Any) -> tuple[int, ...]:
    """The seeds of the run's replicas: ``config.seed + k`` for ``k < config.num_seeds``."""
    return tuple(config["seed"] + k for k in range(config["num_seeds"]))


def replica_configs(config: Any) -> list[Any]:
    """One config per replica: `config` itself for a 1-seed run, else copies with ``seed``
    ``config.seed + k`` and ``num_seeds`` 1 (the config of the equivalent 1-seed run)."""
    if config["num_seeds"] == 1:
        return [config]
    out = []
    for seed in seeds(config):
        replica = copy.deepcopy(config)
        replica["seed"], replica["num_seeds"] = seed, 1
        out.append(replica)
    return out


def stack(trees: Sequence[Any]) -> Any:
    """The replicas' pytrees stacked along a new leading axis (host numpy arrays)."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def select(tree: Any, index: int) -> Any:
    """Replica `index` of a stacked pytree."""
    return jax.tree.map(lambda x: x[index], tree)


def vmap_steps(train: Callable, evaluate: Callable) -> tuple[Callable, Callable]:
    """``(train, evaluate)`` over stacked states: the train step maps the state and the
    stacked batches ``(K, B, ...)``, the eval step maps the state over one shared batch."""
    return jax.vmap(train), jax.vmap(evaluate, in_axes=(0, None))


class ReplicaIterator:
    """K training iterators as one: each batch is theirs stacked, ``(K, local_batch, ...)``.

    Checkpointable through grain's Orbax handler (`jaxconv.data.iterator_save_args`): the
    state is one JSON list of the K iterators' states.

    Args:
      iterators: one grain iterator per replica, in replica order.
    """

    def __init__(self, iterators: Sequence[Any]):
        self.iterators = list(iterators)

    def __iter__(self) -> ReplicaIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batches = [next(it) for it in self.iterators]
        return {key: np.stack([b[key] for b in batches]) for key in batches[0]}

    def get_state(self) -> bytes:
        """The K iterators' positions (bytes: grain's handler writes them as text)."""
        return json.dumps([it.get_state() for it in self.iterators], indent=1).encode()

    def set_state(self, state: bytes) -> None:
        """Moves the K iterators to the positions of `get_state`'s output.

        Raises:
          ValueError: the state holds another number of iterators.
        """
        states = json.loads(state)
        if not isinstance(states, list) or len(states) != len(self.iterators):
            raise ValueError(f"the checkpoint's data state is not that of "
                             f"{len(self.iterators)} replicas' iterators")
        for it, s in zip(self.iterators, states):
            it.set_state(s)

    def start_prefetch(self) -> None:
        """Lets each iterator read ahead (grain's handler calls it after a restore)."""
        for it in self.iterators:
            if hasattr(it, "start_prefetch"):
                it.start_prefetch()

    def close(self) -> None:
        """Closes the iterators that can be (grain workers)."""
        for it in self.iterators:
            if hasattr(it, "close"):
                it.close()


def summarize_eval(totals: dict[str, Any]) -> dict[str, Any]:
    """`jaxconv.training.steps.summarize_eval` of stacked eval sums (host arrays ``(K,)``):
    ``loss`` and ``accuracy`` the means over the seeds, ``count`` the examples (each seed
    saw all of them), ``loss_seeds`` / ``accuracy_seeds`` each seed's (lists of floats)."""
    count = np.maximum(np.asarray(totals["count"], np.float64), 1.0)
    loss = np.asarray(totals["loss_sum"], np.float64) / count
    accuracy = np.asarray(totals["correct"], np.float64) / count
    return {"loss": float(np.mean(loss)), "accuracy": float(np.mean(accuracy)),
            "count": float(np.asarray(totals["count"]).reshape(-1)[0]),
            "loss_seeds": loss.tolist(), "accuracy_seeds": accuracy.tolist()}


def split_seeds(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """``(means, per_seed)`` of logged values: an array of per-seed values becomes its mean
    (a float) in ``means`` and its list in ``per_seed``; scalars stay as they are."""
    means, per_seed = {}, {}
    for name, value in values.items():
        array = np.asarray(value) if isinstance(value, (np.ndarray, list)) else None
        if array is not None and array.ndim == 1:
            means[name], per_seed[name] = float(np.mean(array)), array.astype(float).tolist()
        else:
            means[name] = value
    return means, per_seed


def seed_summary(config: Any, final: dict[str, Any],
                 history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a K-seed run adds to ``metrics.json`` (nothing for a 1-seed run): ``num_seeds``
    and ``seeds``, one record per replica (``seed``, final test loss and accuracy, last
    logged train loss and accuracy)."""
    if config["num_seeds"] == 1:
        return {}
    last = {"test_loss": final.get("loss_seeds"), "test_accuracy": final.get("accuracy_seeds")}
    for name in ("train_loss", "train_accuracy"):
        last[name] = next((r[name + SEEDS_SUFFIX] for r in reversed(history)
                           if name + SEEDS_SUFFIX in r), None)
    records = []
    for k, seed in enumerate(seeds(config)):
        record = {"seed": seed}
        record.update({name: None if last[name] is None else last[name][k]
                       for name in SEED_FIGURES})
        records.append(record)
    return {"num_seeds": config["num_seeds"], "seeds": records}
