"""Several seeds of a training variant in one program (``--batch_seeds``).

With `batched_variants`, the runner trains each eligible training variant once with
``config.num_seeds = K`` (its K seeds as replicas, `jaxconv.training.replicas`) into
``W/<variant>/seeds<first>-<last>/`` instead of K runs ``W/<variant>/seed<k>/``, and reads
seed k's row from replica ``k - first``. Each seed's ``result.json`` stays where it was
(``W/<variant>/seed<k>/result.json``), so evaluation variants, drops and the report read it
as before. A replica is the same experiment as the 1-seed run of its seed, not a bit-exact
copy of it (docs/training.md), so a batched result is not reused for an unbatched run or the
other way round (their settings differ).

Eligible: a training variant that neither starts from another run (a `RunOf` override) nor
is one that another variant starts from (fine-tuning from a K-seed run is refused by the
trainer), with consecutive integer seeds (replica k trains seed ``first + k``), at least two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from etils import epath

from jaxconv import run_files
from jaxconv.experiments.spec import Experiment, RunOf, Variant


def batched_variants(experiment: Experiment, seeds: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """``{variant name: seeds}`` for the training variants whose seeds can train as one
    program (module docstring); {} when the seeds are not consecutive or fewer than two."""
    seeds = tuple(seeds)
    if len(seeds) < 2 or seeds != tuple(range(seeds[0], seeds[0] + len(seeds))):
        return {}
    sources = {value.variant for v in experiment.variants for value in v.overrides.values()
               if isinstance(value, RunOf)}
    return {v.name: seeds for v in experiment.variants
            if v.trains and v.name not in sources and not _starts_from_a_run(v)}


def _starts_from_a_run(variant: Variant) -> bool:
    return any(isinstance(value, RunOf) for value in variant.overrides.values())


def batch_dir(workdir: str | epath.PathLike, variant: str, seeds: Sequence[int]) -> epath.Path:
    """``workdir/<variant>/seeds<first>-<last>``: the trainer's workdir of a batched run."""
    return run_files.path(workdir) / variant / f"seeds{seeds[0]}-{seeds[-1]}"


def replica_metrics(metrics: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Replica `index`'s view of a K-seed run's ``metrics.json``: its own history of test
    accuracies (``test_accuracy_seeds``) and the run's wall time shared equally."""
    history = [{"step": r["step"], "test_accuracy": r["test_accuracy_seeds"][index]}
               for r in metrics.get("history", []) if "test_accuracy_seeds" in r]
    return {**metrics, "history": history,
            "wall_seconds": float(metrics.get("wall_seconds") or 0.0) / metrics["num_seeds"]}
