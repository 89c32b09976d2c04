"""Train and evaluate a jaxconv model; the logic lives in `jaxconv.training`.

    python train.py --config configs/default.py --workdir runs/default
    python train.py --config configs/default.py --workdir runs/lr01 \
        --config.optimizer.learning_rate=0.1
    # Two processes on one machine (each runs this with its own --process_id):
    python train.py --config configs/default.py --workdir runs/mp \
        --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=0

Run the same command again to resume from the newest readable checkpoint. On SIGTERM
(preemption notice) it writes a checkpoint of the current step and exits with status 143.
"""

from jaxconv import runtime

# XLA flags and malloc settings, before jax starts its backend. CPU-only; the user's
# XLA_FLAGS win; JAXCONV_NO_XLA_FLAGS=1 / JAXCONV_NO_MALLOC_TUNING=1 turn them off.
runtime.tune_cpu()

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxconv import training  # noqa: E402
from jaxconv.training import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, logs, metrics.json (resumes).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "Multi-process: host:port.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process: process count.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process: this process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {argv[1:]}")
    cli.quiet_logging()
    with cli.clean_errors():
        training.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        training.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
