"""The command line of the experiment runner: flags, process settings, one-line errors."""

from __future__ import annotations

import shlex
import sys

from absl import flags

from jaxconv import run_files, runtime
from jaxconv.cli_errors import fail, quiet_logging
from jaxconv.experiments import report, runner, spec
from jaxconv.training import cli as training_cli


def define_flags() -> None:
    """Defines the flags (only when run as a program: importing defines none)."""
    flags.DEFINE_string("config", None, "Experiment config file (defines get_experiment()).")
    flags.DEFINE_string("workdir", None, "Where the runs and report.md go (reruns resume).")
    flags.DEFINE_bool("quick", False, "The experiment's quick overrides and one seed: a "
                      "check of the runner end to end, not of the claims.")
    flags.DEFINE_bool("batch_seeds", False, "Train each training variant's seeds as one "
                      "program (config.num_seeds) where it can: faster; replicas are not "
                      "bit-identical to 1-seed runs (docs/experiments.md).")
    flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    """Loads the experiment, runs it, writes and prints the report."""
    if len(argv) > 1:
        fail(f"unexpected arguments: {argv[1:]}")
    quiet_logging()
    runtime.tune_cpu()  # Before the first computation; the user's XLA_FLAGS win.
    runtime.enable_compilation_cache()
    f = flags.FLAGS
    try:
        experiment = spec.load(f.config)
    except (FileNotFoundError, ValueError, KeyError) as err:
        fail(str(err))
    if f.quick:
        experiment = spec.quick_subset(experiment)
    n = len(experiment.variants)
    seeds = experiment.seeds[:1] if f.quick else experiment.seeds
    print(f"{experiment.name}: {n} variants x {len(seeds)} seeds into {f.workdir}", flush=True)
    try:
        with training_cli.clean_errors():  # The trainer's errors: one line, its exit codes.
            results = runner.run_experiment(
                experiment, f.workdir, quick=f.quick, batch_seeds=f.batch_seeds,
                log=lambda line: print(line, flush=True))
    except (runner.ExperimentError, KeyError, run_files.BucketAccessError) as err:
        fail(str(err))
    command = "python -m jaxconv.experiments " + shlex.join(sys.argv[1:])
    text = report.write(experiment, results, f.workdir, quick=f.quick, command=command)
    print(text)
    print(f"wrote {f.workdir}/{report.REPORT_FILE}", flush=True)
