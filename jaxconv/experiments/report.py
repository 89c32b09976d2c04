"""The experiment's report: one table row per variant, one line per claim with its verdict.

``W/report.md`` holds the markdown table (the same text is printed) and ``W/results.json``
every run's record plus the summaries. Accuracies are percentages, "mean ± half-width of the
95 % t-interval over seeds" (`jaxconv.experiments.stats`); the gap is train minus test
accuracy in percentage points. Evaluation rows add the drop from their training variant's
clean test accuracy and the cosine similarity of their penultimate features to the clean
images'. Time is the mean training time per seed (evaluation time for ``eval_of`` rows).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from etils import epath

from jaxconv.experiments import figures, stats
from jaxconv.experiments.spec import METRICS, Experiment, Variant

REPORT_FILE = "report.md"
RESULTS_FILE = "results.json"


def _settings_text(variant: Variant) -> str:
    if variant.eval_of:
        text = f"eval of {variant.eval_of}: {variant.eval_transform!r}"
    elif not variant.overrides:
        text = "base"
    else:
        text = ", ".join(f"{k}={v!r}" for k, v in variant.overrides.items())
    return f"{variant.description} ({text})" if variant.description else text


def summaries(experiment: Experiment, results: Sequence[dict]) -> dict[str, dict]:
    """Per variant: `stats.Summary` of each metric over its seeds, and run facts.

    Returns:
      ``{variant: {"test_accuracy": Summary, "train_accuracy": ..., "gap": ...,
      "steps_to_target": ..., "num_params": Summary, "parameters": int | None,
      "seconds": float, "seeds": int}}`` (a `Summary` for every metric of `METRICS`).
    """
    out = {}
    for v in experiment.variants:
        rows = [r for r in results if r["variant"] == v.name]
        seconds = [r["train_seconds"] if v.trains else r["eval_seconds"] for r in rows]
        out[v.name] = {
            metric: stats.summarize([r.get(metric) for r in rows]) for metric in METRICS
        }
        out[v.name].update(parameters=rows[0]["num_params"] if rows else None,
                           seconds=sum(seconds) / len(seconds) if seconds else math.nan,
                           seeds=len(rows))
    return out


def _fmt_steps(s: stats.Summary, seeds: int) -> str:
    if s.n == 0:
        return "—"
    text = stats.format_summary(s, scale=1.0, digits=0)
    return text if s.n == seeds else f"{text} ({s.n}/{seeds} reached)"


def table(experiment: Experiment, results: Sequence[dict]) -> str:
    """The markdown table of the variants (and, if any, of the claims)."""
    summ = summaries(experiment, results)
    steps = bool(experiment.target_accuracy)
    drops = any(not v.trains for v in experiment.variants)
    head = ["variant", "settings", "parameters", "test accuracy %", "train accuracy %",
            "gap (points)"]
    head += ["drop (points)", "feature similarity"] * drops
    head += [f"steps to {100 * experiment.target_accuracy:g}%"] * steps
    head += ["time/seed (s)", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in experiment.variants:
        s = summ[v.name]
        params = f"{s['parameters']:,}" if s["parameters"] is not None else "—"
        cells = [v.name, _settings_text(v), params, stats.format_summary(s["test_accuracy"]),
                 stats.format_summary(s["train_accuracy"]), stats.format_summary(s["gap"])]
        if drops:
            cells += ([stats.format_summary(s["drop"]),
                       stats.format_summary(s["feature_similarity"], scale=1.0, digits=3)]
                      if not v.trains else ["", ""])
        cells += [_fmt_steps(s["steps_to_target"], s["seeds"])] * steps
        cells += [f"{s['seconds']:.1f}", str(s["seeds"])]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if experiment.claims:
        lines += ["", "| claim | statement | measured (better vs worse) | verdict |",
                  "|---|---|---|---|"]
        for claim in experiment.claims:
            a, b = summ[claim.better][claim.metric], summ[claim.worse][claim.metric]
            scale, digits = {"steps_to_target": (1.0, 0), "num_params": (1.0, 0),
                             "feature_similarity": (1.0, 3)}.get(claim.metric, (100.0, 1))
            measured = (f"{claim.metric}: {claim.better} "
                        f"{stats.format_summary(a, scale, digits)} vs {claim.worse} "
                        f"{stats.format_summary(b, scale, digits)}")
            verdict = stats.verdict(a, b, claim.higher_is_better)
            lines.append(f"| {claim.name} | {claim.statement} | {measured} | {verdict} |")
    return "\n".join(lines)


def write(experiment: Experiment, results: Sequence[dict], workdir: str, *,
          quick: bool, command: str = "") -> str:
    """Writes ``report.md``, ``results.json`` and ``figures/*.png`` (`figures`) into
    `workdir`; returns the table text."""
    text = table(experiment, results)
    rule = ("Verdict rule, fixed in advance: *supported* when the two rows' 95 % t-intervals "
            "over seeds do not overlap in the claimed direction, *contradicted* when they do "
            "not overlap the other way, *inconclusive* otherwise (and with one seed).")
    body = [f"# {experiment.name}", ""]
    if quick:
        body += ["**--quick run**: a few steps, one seed; the figures check the runner, "
                 "not the claims.", ""]
    if command:
        body += [f"Command: `{command}`", ""]
    body += [text, ""]
    if experiment.claims:
        body += [rule, ""]
    root = epath.Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    summ = summaries(experiment, results)
    written = figures.write_figures(summ, [v.name for v in experiment.variants if not v.trains],
                                    workdir)
    body += [f"![{epath.Path(p).stem}]({figures.FIGURES_DIR}/{epath.Path(p).name})"
             for p in written]
    (root / REPORT_FILE).write_text("\n".join(body) + "\n")
    summ = {name: {k: (v.__dict__ if isinstance(v, stats.Summary) else v)
                   for k, v in s.items()} for name, s in summ.items()}
    (root / RESULTS_FILE).write_text(json.dumps({"quick": quick, "runs": list(results),
                                                 "summaries": summ}, indent=2))
    return text
