"""``python -m jaxconv.predict``: top-k labels for image files, from a training workdir.

    python -m jaxconv.predict --workdir runs/default img1.png photo.jpg [--top-k 3] [--json]
        [--resize fit|crop|pad|none] [--batch-size 64] [--seed_index 0]

Prints one table row per file: what was done to it (``input``) and its top-k labels (or, with
``--json``, a JSON list of ``{"file", "input", "top_k": [{"label", "probability"}]}``, plus
``"error"`` for a file that could not be predicted).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from jaxconv import run_files
from jaxconv.cli_errors import fail, quiet_logging
from jaxconv.predict.images import RESIZE_POLICIES
from jaxconv.predict.predictor import FilePrediction, Predictor

EXIT_OK, EXIT_FILE_ERROR = 0, 1  # Exit status 2 (bad arguments or workdir) is `fail`'s.

_EPILOG = """resize: fit scales the whole image to the model's size; crop keeps the aspect
ratio and cuts the centre; pad keeps the aspect ratio and fills the rest with black; none
refuses other sizes. Colour is converted to the model's channels first (gray for digits,
mnist; RGB for cifar10, imagenet2012).
exit status: 0 every file was predicted; 1 some file could not be (unreadable, not an image,
wrong size with --resize none: its error is in the output, the other files are still
predicted); 2 bad arguments or a workdir without run.json / a usable checkpoint."""


class _Parser(argparse.ArgumentParser):
    """argparse with `fail`'s one ``error:`` line (exit 2) instead of usage + error."""

    def error(self, message: str):
        fail(f"{message} (python -m jaxconv.predict --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m jaxconv.predict", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Predict the top-k labels of image files with a trained jaxconv model: the "
                    "newest checkpoint of --workdir, with the eval preprocessing and class "
                    "names of its dataset.")
    parser.add_argument("--workdir", required=True, help="a directory train.py wrote")
    parser.add_argument("files", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="labels per file (default: 5, or the class count if smaller)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--batch-size", type=int, default=64, help="images per model call")
    parser.add_argument("--resize", choices=RESIZE_POLICIES, default=None,
                        help="what to do to a file of another size than the model's (default: "
                             "fit; imagenet2012 runs: their eval resize and central crop)")
    parser.add_argument("--seed_index", "--seed-index", type=int, default=0,
                        help="a run of several seeds (config.num_seeds): the replica to use, "
                             "trained with seed config.seed + SEED_INDEX (default: 0)")
    return parser


def printable(text: str) -> str:
    """`text` with control and other unprintable characters (a newline, an escape sequence,
    an undecodable byte of a file name) escaped as in a Python string literal."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def format_table(results: Sequence[FilePrediction]) -> str:
    """One aligned row per file: ``file  input  label (percent) ...``, or ``file  error: why``.

    ``input`` says what was done to the file (``28x28 -> 8x8 (fit), RGB -> gray``).

    File names and errors are `printable`: one line per file whatever the names hold (the
    JSON output keeps the real names).
    """
    k = max((len(r.top_k) for r in results), default=0)
    header = ["file", "input"] + [f"top-{i + 1}" for i in range(k)]
    # 4 significant digits: a confident model's runners-up show as 0.0001887%, not 0.0%.
    rows = [[printable(r.file), r.input] + [f"{label} ({100 * p:.4g}%)" for label, p in r.top_k]
            for r in results]
    widths = [max(len(row[i]) for row in [header] + rows if i < len(row) and row[i])
              for i in range(k + 2)]

    def line(cells):
        return "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths)).rstrip()

    lines = [line(header)]
    for r, row in zip(results, rows):
        if r.error is None:
            lines.append(line(row))
        else:  # The error runs to the end of the line, without repeating the file name.
            why = printable(r.error.removeprefix(r.file + ": "))
            lines.append(f"{row[0]:<{widths[0]}}  error: {why}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI on `argv` (None: ``sys.argv[1:]``); returns the exit status.

    Raises:
      SystemExit: status 2 with one ``error: ...`` line for bad arguments or a bad workdir.
    """
    args = _parser().parse_args(argv)
    quiet_logging()
    if args.batch_size < 1:
        fail(f"--batch-size={args.batch_size}: must be a positive integer")
    try:
        predictor = Predictor.from_checkpoint(args.workdir, batch_size=args.batch_size,
                                              resize=args.resize, seed_index=args.seed_index)
    except (FileNotFoundError, ValueError, run_files.BucketAccessError) as err:
        fail(str(err))
    n = len(predictor.class_names)
    if args.top_k is not None and not 1 <= args.top_k <= n:
        fail(f"--top-k={args.top_k}: must be in [1, {n}] (the model has {n} classes)")
    results = predictor.predict_files(args.files, top_k=args.top_k)
    if args.json:
        # allow_nan=False: never NaN/Infinity, which are not JSON (predict_files turns
        # non-finite probabilities into an error).
        print(json.dumps([r.to_json() for r in results], indent=1, allow_nan=False))
    else:
        print(format_table(results))
    return EXIT_FILE_ERROR if any(r.error is not None for r in results) else EXIT_OK
