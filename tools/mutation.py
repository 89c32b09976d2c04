"""Mutation testing of jaxconv's core modules (cosmic-ray), each against its share of the fast tier.

A mutant is the package with one small change (``a + b`` -> ``a - b``, ``<`` -> ``<=``, a number
+1, ``and`` -> ``or``, a ``break`` -> ``continue``, ...). It is *killed* when the module's tests
fail on it and *survives* when they pass: a survivor is either equivalent (no behaviour
changed) or a bug the tests would miss. Not in CI (it takes minutes per module); run it after
changing a module or its tests, then kill the real survivors with a test.

    pip install cosmic-ray==8.7.0
    python tools/mutation.py                                 # every module, 20 mutants each
    python tools/mutation.py training.steps models --sample 0   # every mutant of two modules
    python tools/mutation.py --list                          # the modules and their tests

The checkout is never touched: the working tree (tracked and untracked, not ignored files)
is copied to a temporary directory and the mutants are made there, one at a time, each tested
by ``python -m pytest -x -m "not slow" -n 0 <the module's tests>`` run in the copy (whose
``jaxconv`` shadows the editable install); ``--tier all`` runs their slow tests too. The
sample is drawn with a fixed seed, so a rerun tests the same mutants. Bit-shift and bitwise
operator swaps are left out (on floats and arrays they fail at once; they would only pad the
score). A mutant whose tests run past ``--timeout`` counts as killed, as cosmic-ray counts
it. Survivors are printed with their diff; ``--report FILE`` also writes them, with every
result, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from cosmic_ray.commands import init
    from cosmic_ray.modules import find_modules
    from cosmic_ray.mutating import mutate_and_test
    from cosmic_ray.testing import run_tests
    from cosmic_ray.work_db import use_db
except ImportError:
    sys.exit("tools/mutation.py needs cosmic-ray: pip install cosmic-ray==8.7.0")

ROOT = Path(__file__).resolve().parents[1]

# module name -> (paths to mutate, the fast tests that own them: files or test ids).
MODULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "functional.conv": (("jaxconv/functional/conv.py",), ("tests/test_functional_conv.py",)),
    "functional.locally_connected": (("jaxconv/functional/locally_connected.py",),
                                     ("tests/test_functional_locally_connected.py",)),
    "functional.pooling": (("jaxconv/functional/pooling.py",),
                           ("tests/test_functional_pooling.py",)),
    "functional.normalization": (("jaxconv/functional/normalization.py",),
                                 ("tests/test_functional_normalization.py",)),
    "functional.args": (("jaxconv/functional/args.py",), ("tests/test_functional_args.py",)),
    "training.steps": (("jaxconv/training/steps.py",),
                       ("tests/test_training_steps.py", "tests/test_randomness.py",
                        "tests/test_fast_invariants.py")),
    "training.optimizer": (("jaxconv/training/optimizer.py",),
                           ("tests/test_training_optimizer.py",)),
    "training.state": (("jaxconv/training/state.py",),
                       ("tests/test_training_steps.py", "tests/test_randomness.py",
                        "tests/test_fast_invariants.py")),
    "training.resume": (("jaxconv/training/resume.py",),
                        ("tests/test_fast_invariants.py",
                         "tests/reliability/test_config_identity.py")),
    "training.config_keys": (("jaxconv/training/config_keys.py",),
                             tuple(f"tests/test_fast_invariants.py::test_{t}" for t in (
                                 "config_key_kind", "compare_puts_each_change_in_its_kind",
                                 "every_default_key_has_its_kind_written_out",
                                 "show_writes_values_as_the_command_line_takes_them"))
                             + ("tests/reliability/test_config_identity.py",)),
    "models": (("jaxconv/models",),
               ("tests/test_models_reference.py", "tests/test_models.py",
                "tests/test_models_vgg.py")),
    "predict": (("jaxconv/predict/predictor.py",),
                ("tests/test_fast_invariants.py", "tests/test_predict.py",
                 "tests/test_predict_cli.py")),
    "transfer": (("jaxconv/transfer",),
                 ("tests/test_transfer.py", "tests/test_pretrained_torch_import.py",
                  "tests/test_pretrained_preprocessing.py",
                  "tests/test_pretrained_download.py")),
}
EXCLUDED_OPERATORS = re.compile(r".*_(RShift|LShift|BitOr|BitAnd|BitXor)$")


def copy_tree(dest: Path) -> None:
    """Copies the working tree's tracked and untracked, not ignored files into `dest`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def mutants(paths: tuple[str, ...], db_path: Path) -> list:
    """Every cosmic-ray work item of `paths` (relative to the cwd), excluded operators out,
    in a stable order."""
    with use_db(str(db_path)) as db:
        init(sorted(find_modules([Path(p) for p in paths])), db, {})
        items = [i for i in db.work_items
                 if not EXCLUDED_OPERATORS.match(i.mutations[0].operator_name)]
    return sorted(items, key=lambda i: (str(i.mutations[0].module_path), i.mutations[0].start_pos,
                                        i.mutations[0].operator_name, i.mutations[0].occurrence))


def describe(item) -> str:
    m = item.mutations[0]
    return f"{m.module_path}:{m.start_pos[0]} {m.operator_name.removeprefix('core/')}"


def run_module(name: str, args, work: Path) -> dict:
    """Tests a sample of `name`'s mutants in `work`; returns its counts and survivors."""
    paths, tests = MODULES[name]
    tier = "-m 'not slow' " if args.tier == "fast" else ""
    command = (f"{sys.executable} -m pytest -x -q {tier}-n 0 -p no:randomly "
               f"-p no:cacheprovider {' '.join(tests)}")
    t0 = time.monotonic()
    outcome, output = run_tests(command, args.timeout)
    baseline = time.monotonic() - t0
    if outcome.value != "survived":
        raise SystemExit(f"{name}: the tests fail without a mutant:\n{output[-3000:]}")
    items = mutants(paths, work / f"{name}.sqlite")
    sample = items if not args.sample or args.sample >= len(items) else \
        sorted(random.Random(args.seed).sample(items, args.sample), key=items.index)
    print(f"{name}: {len(items)} mutants, testing {len(sample)} ({baseline:.0f} s per run, "
          f"timeout {args.timeout:.0f} s)", flush=True)
    results = []
    for k, item in enumerate(sample, 1):
        result = mutate_and_test(item.mutations, command, args.timeout)
        verdict = result.test_outcome.value if result.test_outcome else result.worker_outcome.value
        results.append({"mutant": describe(item), "result": verdict, "diff": result.diff})
        print(f"  [{k}/{len(sample)}] {verdict:9s} {describe(item)}", flush=True)
    counted = [r for r in results if r["result"] in ("killed", "survived")]
    killed = sum(r["result"] == "killed" for r in counted)
    return {"module": name, "mutants": len(items), "tested": len(counted), "killed": killed,
            "score": killed / len(counted) if counted else None, "tests": tests,
            "survivors": [r for r in results if r["result"] == "survived"], "results": results}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help=f"default: all of {sorted(MODULES)}")
    parser.add_argument("--sample", type=int, default=20, help="mutants per module (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="the sample's seed")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per test run")
    parser.add_argument("--tier", choices=("fast", "all"), default="fast",
                        help="run the module's fast tests (default) or its slow ones too")
    parser.add_argument("--report", help="write the results as JSON here")
    parser.add_argument("--list", action="store_true", help="print the modules and their tests")
    args = parser.parse_args(argv)
    if args.list:
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(ROOT)
            for name, (paths, tests) in MODULES.items():
                count = len(mutants(paths, Path(tmp) / f"{name}.sqlite"))
                print(f"{name} ({count} mutants): {' '.join(paths)} <- {' '.join(tests)}")
        return 0
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown modules {unknown}; valid: {sorted(MODULES)}")
    report = Path(args.report).resolve() if args.report else None
    summaries = []
    with tempfile.TemporaryDirectory(prefix="jaxconv-mutation-") as tmp:
        work = Path(tmp)
        copy_tree(work)
        os.chdir(work)  # cosmic-ray mutates paths relative to the cwd; pytest runs here too.
        for name in args.modules or list(MODULES):
            summaries.append(run_module(name, args, work))
    print("\nmodule                        mutants  tested  killed  score")
    for s in summaries:
        score = "-" if s["score"] is None else f"{100 * s['score']:.0f}%"
        print(f"{s['module']:30s}{s['mutants']:7d}{s['tested']:8d}{s['killed']:8d}  {score}")
    for s in summaries:
        for r in s["survivors"]:
            print(f"\nSURVIVED {r['mutant']}\n{r['diff']}")
    if report:
        report.write_text(json.dumps(summaries, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
