"""Ablations over the trainer: variants x seeds, a report with 95 % intervals and verdicts.

``python -m jaxconv.experiments --config configs/experiments/<name>.py --workdir W [--quick]``
trains every variant of the experiment for every seed with
`jaxconv.training.train_and_evaluate` (into ``W/<variant>/seed<k>``, skipping what is done),
evaluates each run, then writes ``W/report.md`` and prints its table. The trainer never
imports this package.

- `jaxconv.experiments.spec`: `Experiment`, `Variant`, `Claim`, `load` (the config format).
- `jaxconv.experiments.transforms`: evaluation transforms (`Shift`, `Brightness`,
  `Contrast`, `Gradient`).
- `jaxconv.experiments.stats`: `summarize` (mean, scipy t-interval), `verdict`.
- `jaxconv.experiments.runner`: `run_experiment`, `run_one`.
- `jaxconv.experiments.batching`: the training variants whose seeds train as one program
  (``--batch_seeds``).
- `jaxconv.experiments.report`: `table`, `write`.
"""

from jaxconv import extras

extras.require("train", feature=__name__)

from jaxconv.experiments.report import table, write
from jaxconv.experiments.runner import ExperimentError, run_dir, run_experiment, run_one
from jaxconv.experiments.spec import (
    Claim,
    Experiment,
    RunOf,
    Variant,
    apply_overrides,
    load,
)
from jaxconv.experiments.stats import Summary, summarize, verdict
from jaxconv.experiments.transforms import Brightness, Contrast, Gradient, Shift

__all__ = [
    "Brightness",
    "Claim",
    "Contrast",
    "Experiment",
    "ExperimentError",
    "Gradient",
    "RunOf",
    "Shift",
    "Summary",
    "Variant",
    "apply_overrides",
    "load",
    "run_dir",
    "run_experiment",
    "run_one",
    "summarize",
    "table",
    "verdict",
    "write",
]
