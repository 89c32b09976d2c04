"""``python -m jaxconv.plots --workdir DIR``: writes a training run's figures to DIR/plots/."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from jaxconv.cli_errors import fail, quiet_logging
from jaxconv.plots.workdir import write_all


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI on `argv` (None: ``sys.argv[1:]``), prints the PNG paths; returns 0.

    Raises:
      SystemExit: status 2 with one ``error: ...`` line for a workdir without ``run.json``
        or a complete checkpoint.
    """
    parser = argparse.ArgumentParser(
        prog="python -m jaxconv.plots",
        description="Write a training run's figures as PNGs under WORKDIR/plots/: first-layer "
                    "filters, training curves, test confusion matrix, input distortions and "
                    "feature maps (a figure that does not apply is skipped with a warning).")
    parser.add_argument("--workdir", required=True, help="a directory train.py wrote")
    args = parser.parse_args(argv)
    quiet_logging()
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    try:
        paths = write_all(args.workdir)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    for path in paths:
        print(path)
    return 0
