"""``python -m jaxconv.plots --workdir DIR``: writes a training run's figures to DIR/plots/."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from jaxconv import run_files
from jaxconv.cli_errors import fail, quiet_logging
from jaxconv.plots.workdir import write_all


class _Parser(argparse.ArgumentParser):
    """argparse with `fail`'s one ``error:`` line (exit 2) instead of usage + error."""

    def error(self, message: str):
        fail(f"{message} (python -m jaxconv.plots --help)")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI on `argv` (None: ``sys.argv[1:]``), prints the PNG paths; returns 0.

    Raises:
      SystemExit: status 2 with one ``error: ...`` line for a workdir without ``run.json``
        or a complete checkpoint, or where the figures cannot be written.
    """
    parser = _Parser(
        prog="python -m jaxconv.plots",
        description="Write a training run's figures as PNGs under WORKDIR/plots/: first-layer "
                    "filters, training curves, test confusion matrix, input distortions and "
                    "feature maps (a figure that does not apply is skipped with a warning).")
    parser.add_argument("--workdir", required=True, help="a directory train.py wrote")
    parser.add_argument("--seed_index", "--seed-index", type=int, default=0,
                        help="a run of several seeds (config.num_seeds): the replica to draw, "
                             "trained with seed config.seed + SEED_INDEX, into "
                             "plots/seed_index<SEED_INDEX>/ unless 0 (default: 0)")
    args = parser.parse_args(argv)
    quiet_logging()
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    try:
        paths = write_all(args.workdir, seed_index=args.seed_index)
    except (FileNotFoundError, ValueError, run_files.BucketAccessError) as err:
        fail(str(err))
    except OSError as err:  # a read-only workdir, `plots` a file, a full disk, ...
        fail(f"cannot write the figures under {args.workdir}: {err.strerror or err}"
             + (f" ({err.filename})" if err.filename else ""))
    for path in paths:
        print(path)
    return 0
