r"""Train and evaluate a jaxconv model; the logic lives in `jaxconv.training`.

    python train.py --config configs/default.py --workdir runs/default
    python train.py --config configs/default.py --workdir runs/lr01 \
        --config.optimizer.learning_rate=0.1
    # Two processes on one machine (each runs this with its own --process_id):
    python train.py --config configs/default.py --workdir runs/mp \
        --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=0
    # On a multi-host Cloud TPU slice (every host runs the same command), under SLURM or
    # Open MPI, --distributed=auto (the default) starts the processes; on / off force it.

Run the same command again to resume from the newest readable checkpoint. On SIGTERM
(preemption notice) it writes a checkpoint of the current step and exits with status 143.
After training it draws the run's figures into ``<workdir>/plots`` (``config.write_plots``).
"""

import os
import signal
import sys

# Ctrl-C while the libraries load: exit quietly with its status (main takes SIGINT over).
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

from jaxconv import runtime  # noqa: E402
from jaxconv.cli_errors import fail, interrupted, quiet_logging, remember_interrupts  # noqa: E402

quiet_logging()  # From here on: warnings as one `warning: ...` line, the cache's included.
# grain's worker processes (config.worker_count) leave a few prefetched batches in shared
# memory that multiprocessing's resource tracker frees at exit, with a warning each run; the
# tracker is a child process, so its warnings are set from the environment it inherits.
os.environ.setdefault("PYTHONWARNINGS", "ignore:resource_tracker:UserWarning")
# XLA flags and malloc settings, before jax starts its backend. CPU-only; the user's
# XLA_FLAGS win; JAXCONV_NO_XLA_FLAGS=1 / JAXCONV_NO_MALLOC_TUNING=1 turn them off.
runtime.tune_cpu()
# Compiled programs cached in ~/.cache/jaxconv/jax: a rerun does not recompile
# (JAXCONV_COMPILATION_CACHE=0 turns it off, =DIR moves it).
runtime.enable_compilation_cache()

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxconv import plots, run_history, runs, training  # noqa: E402
from jaxconv.training import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, logs, metrics.json (resumes).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "Multi-process: host:port.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process: process count.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process: this process's index.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "Multi-process start: auto (when the platform runs this on several hosts), on, off.")
flags.mark_flags_as_required(cli.REQUIRED_FLAGS)


def main(argv, hooks: training.Hooks | None = None):
    """Trains as the flags say, then (``config.write_plots``) draws the run's figures.

    Args:
      argv: what absl left after parsing the flags (the program name only).
      hooks: passed to `train_and_evaluate` (for drivers that wrap this entry point, such
        as tests/reliability/fault_driver.py).
    """
    remember_interrupts()  # KeyboardInterrupt from here on.
    if len(argv) > 1:
        fail(f"unexpected arguments: {argv[1:]}")
    quiet_logging()
    config, workdir = _CONFIG.value, cli.check_workdir_flag(_WORKDIR.value)
    with cli.clean_errors():
        why = training.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                              _PROCESS_ID.value, mode=_DISTRIBUTED.value)
        if jax.process_count() > 1 or _DISTRIBUTED.value != "auto":  # Else the trainer's
            print(f"{training.describe_processes()}; {why}", flush=True)  # line says it all.
        try:
            params = training.train_and_evaluate(config, workdir, hooks=hooks).params
        except training.RunComplete as done:
            if not done.plots_pending:
                raise
            print(done, flush=True)  # Stopped while drawing: draw from the last checkpoint.
            params = None
        if config.write_plots and jax.process_index() == 0:  # Local copies: no collective.
            _draw_plots(workdir, params)
        if interrupted():  # A Ctrl-C was swallowed on the way: report it.
            raise KeyboardInterrupt



def _draw_plots(workdir: str, params) -> None:
    """Draws the run's figures, then marks the plots phase done (`jaxconv.run_history`)."""
    paths = plots.write_all(workdir, params=params)
    run_history.mark_done(workdir, run_history.PLOTS_PHASE, runs.read_metrics(workdir)["step"])
    print(f"wrote {len(paths)} plots to {os.path.dirname(paths[0])}" if paths
          else "wrote no plots", flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
