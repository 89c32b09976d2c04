"""Which config keys define what a run trains, and which only its bookkeeping.

A workdir holds one training run. When the trainer resumes it (`jaxconv.training.resume`),
it compares the config with the one the run was trained with, key by key, in three kinds:

- `TRAINED`: the key changes what is trained (the model, the data and the order it is seen
  in, the distortions, the optimizer, the seed, the batch, the precision, the parallel
  strategy, fine-tuning). A different value stops the run: the checkpoint's steps were taken
  with the old value, so continuing would make a run that no config describes.
- `LENGTH`: ``num_train_steps`` and ``num_epochs``. A longer run continues (the trainer warns
  how the learning-rate schedule changes: a cosine ends later); a run shorter than the step
  it already reached is an error.
- `BOOKKEEPING`: how the run is logged, evaluated, checkpointed, drawn or read from disk.
  A different value is allowed and recorded in ``run.json``'s ``resumes``.

Every key of ``configs/default.py`` is in exactly one kind (``tests/reliability/
test_config_identity.py`` checks it, so a new key cannot slip through unclassified); a key
under `TRAINED_PREFIXES` (any model argument) is `TRAINED`. A key found nowhere is treated
as `TRAINED`, the safe side.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

TRAINED = frozenset({
    "seed",  # Parameter init, data order, distortions, dropout.
    "num_seeds",  # The replicas trained (and the checkpoint's stacked state).
    "dataset", "classes", "image_size", "train_crop", "crop_resize_size",
    # grain worker processes change which examples share a batch (jaxconv.data.pipeline)
    # and the iterator state a checkpoint holds.
    "worker_count",
    "distortion.rotation_degrees", "distortion.translate", "distortion.scale",
    "distortion.horizontal_flip", "distortion.crop_padding", "distortion.crop_padding_mode",
    "distortion.brightness", "distortion.contrast",
    "model", "compute_dtype",
    "init.checkpoint", "init.torch_weights", "init.exclude",
    "freeze.first_layers", "freeze.patterns", "freeze.lower_lr_scale",
    "batch_size",
    "optimizer.learning_rate", "optimizer.momentum", "optimizer.nesterov",
    "optimizer.weight_decay", "optimizer.no_decay_names", "optimizer.schedule",
    "optimizer.warmup_epochs", "optimizer.decay_epochs", "optimizer.decay_factor",
    "optimizer.final_lr_fraction", "optimizer.grad_clip_norm",
    "parallelism",  # jit and pmap reduce in different orders.
})
TRAINED_PREFIXES = ("model_kwargs.",)  # Every model argument.
LENGTH = frozenset({"num_train_steps", "num_epochs"})
BOOKKEEPING = frozenset({
    "data_dir",  # Where the same dataset is read from.
    "eval_batch_size",  # Evaluation covers every test example once, at any batch size.
    "log_every_steps", "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints",
    "profile_steps", "progress_bar", "write_plots",
    "divergence_factor",  # When a run counts as failed, not what it trains.
})

KINDS = ("trained", "length", "bookkeeping")


class _Unset:
    def __repr__(self) -> str:
        return "unset"


UNSET = _Unset()  # The value of a model argument that one of two configs does not set.


def kind(key: str) -> str:
    """``"trained"``, ``"length"`` or ``"bookkeeping"`` for a dotted config key.

    Args:
      key: a dotted key such as ``"optimizer.learning_rate"``.

    Returns:
      The key's kind (module docstring); ``"trained"`` for a key that is not classified.
    """
    if key in LENGTH:
        return "length"
    if key in BOOKKEEPING:
        return "bookkeeping"
    return "trained"


def is_classified(key: str) -> bool:
    """Whether `key` is listed in one of the kinds (or under a `TRAINED_PREFIXES` prefix)."""
    return (key in TRAINED or key in LENGTH or key in BOOKKEEPING
            or key.startswith(TRAINED_PREFIXES))


def flatten(config: Any) -> dict[str, Any]:
    """``{dotted key: value}`` of a config's leaves, values as JSON gives them back.

    Args:
      config: a ConfigDict or a nested mapping (``run.json``'s ``config``).

    Returns:
      Tuples become lists, so that a config and its JSON record compare equal.
    """
    plain = config.to_dict() if hasattr(config, "to_dict") else config
    plain = json.loads(json.dumps(plain))
    out: dict[str, Any] = {}

    def visit(node: Mapping, prefix: str) -> None:
        for name, value in node.items():
            if isinstance(value, Mapping) and value:
                visit(value, f"{prefix}{name}.")
            else:
                out[f"{prefix}{name}"] = value

    visit(plain, "")
    return out


def show(value: Any) -> str:
    """A value as it is written on the command line: lists as tuples, strings quoted."""
    if isinstance(value, list):
        return "(" + ", ".join(show(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


@dataclasses.dataclass(frozen=True)
class ConfigChanges:
    """The keys whose value differs between a run's recorded config and a new one.

    Attributes:
      trained, length, bookkeeping: ``{key: (old, new)}`` per kind (JSON values).
      unmatched: keys present on one side only (a key added to or removed from the config
        since the run started), not compared; a model argument set on one side only is a
        `trained` change from or to `UNSET`.
    """

    trained: dict[str, tuple[Any, Any]]
    length: dict[str, tuple[Any, Any]]
    bookkeeping: dict[str, tuple[Any, Any]]
    unmatched: tuple[str, ...] = ()

    def describe(self, which: str) -> str:
        """``"key old → new, ..."`` for the changes of kind `which`."""
        changes = getattr(self, which)
        return ", ".join(f"{k} {show(a)} → {show(b)}" for k, (a, b) in changes.items())


def compare(recorded: Any, config: Any) -> ConfigChanges:
    """The differences between a run's recorded config and `config`, by kind.

    Args:
      recorded: the config the run was trained with (``run.json``), nested mapping.
      config: the config of this invocation (ConfigDict or mapping).

    Returns:
      A `ConfigChanges`; values compare as JSON (a tuple equals its list, 40 equals 40.0).
    """
    old, new = flatten(recorded), flatten(config)
    by_kind: dict[str, dict[str, tuple[Any, Any]]] = {k: {} for k in KINDS}
    for key in sorted(old.keys() & new.keys()):
        if old[key] != new[key]:
            by_kind[kind(key)][key] = (old[key], new[key])
    unmatched = []
    for key in sorted(old.keys() ^ new.keys()):
        if key.startswith(TRAINED_PREFIXES):  # A model argument set on one side only.
            by_kind["trained"][key] = (old.get(key, UNSET), new.get(key, UNSET))
        else:
            unmatched.append(key)
    return ConfigChanges(by_kind["trained"], by_kind["length"], by_kind["bookkeeping"],
                         tuple(unmatched))
