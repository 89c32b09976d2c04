"""docs/accelerators.md: its commands, read from the page itself, run or checked.

A line ``<!-- tested: tests/test_accelerators_doc.py::NAME -->`` right above a fenced bash
block makes test ``NAME`` run the block with bash, as written, in a temporary home, with
``python``, ``pip`` and ``gcloud`` replaced by the stand-ins of `doc_shim` (train.py shrunk
to 3 steps, CIFAR-10 from ``tfds.testing.mock_data``, ``gcloud ... ssh --command`` run here
as if this machine were a TPU worker). ``<!-- checked: ... -->`` blocks cannot run here (GPU,
TPU, network): their pip extras and gcloud commands are checked (`test_install_commands`,
`test_gcloud_commands`). Every bash block carries one of the two markers, and the markers and
the tests below name each other, so the page and this file cannot drift apart.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tarfile

import doc_shim
import pytest

from jaxconv import run_files, training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "accelerators.md")
MARKER = re.compile(r"^\s*<!-- (tested|checked): tests/test_accelerators_doc\.py::(\w+) -->\s*$")
DOC_TESTS = {
    "tested": ("test_device_check", "test_one_gpu_machine", "test_deterministic_gpu_ops",
               "test_rehearse_multihost", "test_package_code", "test_prepare_dataset",
               "test_tpu_sanity_run", "test_tpu_training_run"),
    "checked": ("test_install_commands", "test_gcloud_commands", "test_accelerator_benchmark"),
}
STEPS = 3
SHRINK = (f"--config.num_train_steps={STEPS} --config.checkpoint_every_steps={STEPS} "
          "--config.log_every_steps=1 --config.write_plots=False --config.progress_bar=False")
# CIFAR-10 from mock data: small batches and a narrow network (the page's command stays as is).
SHRINK_CIFAR = (SHRINK + " --config.batch_size=8 --config.eval_batch_size=8 "
                "--config.model_kwargs.features='(8, 8, 8)'")
# The gcloud commands the page may use and their flags, as the Google Cloud CLI reference
# gives them (https://cloud.google.com/sdk/gcloud/reference/<group>/<command>, pages last
# updated 2025-05-07); adding a command to the page means checking it there and adding it here.
GCLOUD = {
    "config set": set(),
    "services enable": set(),
    "storage buckets create": {"--location"},
    "storage cp": {"--recursive"},
    "storage rm": {"--recursive"},
    "compute tpus tpu-vm create": {"--zone", "--accelerator-type", "--version", "--spot"},
    "compute tpus tpu-vm ssh": {"--zone", "--worker", "--command"},
    "compute tpus tpu-vm scp": {"--zone", "--worker", "--recurse"},
    "compute tpus tpu-vm delete": {"--zone"},
    "compute tpus queued-resources create": {"--node-id", "--zone", "--accelerator-type",
                                             "--runtime-version", "--spot"},
    "compute tpus queued-resources describe": {"--zone"},
    "compute tpus queued-resources delete": {"--zone", "--force"},
}
GCLOUD_WIDE_FLAGS = {"--project", "--quiet"}


# ------------------------------------------------------------------------ reading the page


def read_blocks() -> list[tuple[str | None, str | None, str]]:
    """``[(kind, test name, code)]`` for every fenced bash block of `PAGE`; kind and name are
    None for a block without a marker."""
    lines = open(PAGE).read().splitlines()
    blocks, marker, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        if m := MARKER.match(line):
            marker = (m[1], m[2])
        elif line.strip().startswith("```bash"):
            indent = len(line) - len(line.lstrip())
            body = []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i][indent:])
                i += 1
            blocks.append((*(marker or (None, None)), "\n".join(body) + "\n"))
            marker = None
        elif line.strip():
            marker = None  # A marker applies only to the block right below it.
        i += 1
    return blocks


def block(name: str) -> str:
    """The code of the block(s) marked for test `name`."""
    found = [code for _, n, code in read_blocks() if n == name]
    assert found, f"no block of {PAGE} is marked for {name}"
    return "".join(found)


def _flatten(code: str) -> str:
    """`code` on one line: continuations and comments dropped, newlines outside quotes -> ``;``
    (inside quotes they stay: an ``ssh --command`` payload is split again later)."""
    out, quote, i = [], None, 0
    while i < len(code):
        ch, nxt = code[i], code[i + 1:i + 2]
        if ch == "\\" and nxt == "\n" and quote != "'":
            i += 2
            continue
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (not out or out[-1] in " \t;"):
            while i < len(code) and code[i] != "\n":
                i += 1
            continue
        elif ch == "\n":
            ch = ";"
        out.append(ch)
        i += 1
    return "".join(out)


def split_commands(code: str) -> list[list[str]]:
    """Simple commands of a bash snippet, as word lists (quotes removed; ``&&``, ``;``,
    ``|``, ``&`` and newlines separate; comments and line continuations dropped)."""
    lexer = shlex.shlex(_flatten(code), posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if set(token) <= set(";&|"):
            commands, current = commands + [current] * bool(current), []
        else:
            current.append(token)
    return commands + [current] * bool(current)


def all_commands(code: str) -> list[list[str]]:
    """`split_commands`, plus the commands inside ``gcloud ... ssh --command=...``."""
    out = []
    for words in split_commands(code):
        out.append(words)
        for word in words:
            if word.startswith("--command="):
                out += all_commands(word.split("=", 1)[1])
    return out


def page_commands() -> list[list[str]]:
    return [c for _, _, code in read_blocks() for c in all_commands(code)]


# --------------------------------------------------------------------- running the blocks


def _wrapper(path, mode: str) -> None:
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{doc_shim.__file__}" {mode} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def sandbox(tmp_path):
    """A home (``~/jaxconv`` -> this repository, ``~/venv/bin/{python,pip}`` stand-ins), a
    checkout directory to run in (``train.py`` and ``configs`` linked), and the stand-ins
    first on PATH. Returns ``run(code, **env) -> CompletedProcess``."""
    home, bin_dir, checkout = tmp_path / "home", tmp_path / "bin", tmp_path / "checkout"
    for d in (home / "venv" / "bin", bin_dir, checkout):
        d.mkdir(parents=True)
    (home / "jaxconv").symlink_to(ROOT)
    for name in ("train.py", "configs"):
        (checkout / name).symlink_to(os.path.join(ROOT, name))
    for d in (bin_dir, home / "venv" / "bin"):
        for mode in ("python", "pip", "gcloud"):
            _wrapper(d / mode, mode)
    base = dict(os.environ, HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                PYTHONPATH=ROOT, PROJECT_ID="test-project", ZONE="europe-west4-b",
                TPU_NAME="jaxconv-test", BUCKET="jaxconv-test-bucket",
                DOC_GCLOUD_LOG=str(tmp_path / "gcloud.jsonl"), DOC_TRAIN_OVERRIDES=SHRINK)

    def run(code: str, cwd=checkout, timeout=420, **env) -> subprocess.CompletedProcess:
        proc = subprocess.run(["bash", "-c", code], cwd=cwd, env=dict(base, **env),
                              capture_output=True, text=True, timeout=timeout)
        proc.home, proc.checkout = home, checkout
        log = tmp_path / "gcloud.jsonl"
        proc.gcloud = [json.loads(x) for x in log.read_text().splitlines()] \
            if log.exists() else []
        return proc

    return run


def _metrics(workdir) -> dict:
    return json.loads(run_files.read_text(os.path.join(str(workdir), "metrics.json")))


def _assert_trained(proc, workdir, **expected) -> dict:
    """`workdir` (local or ``gs://``) holds the finished shrunk run."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = _metrics(workdir)
    assert metrics["step"] == STEPS, metrics
    for key, value in expected.items():
        assert metrics[key] == value, (key, metrics)
    assert run_files.listdir(os.path.join(str(workdir), "checkpoints")) == [str(STEPS)]
    return metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_device_check(sandbox):
    proc = sandbox(block("test_device_check"))
    assert proc.returncode == 0, proc.stderr
    assert "CpuDevice(id=0)" in proc.stdout


@pytest.mark.slow
def test_one_gpu_machine(sandbox):
    code = block("test_one_gpu_machine")
    assert "export XLA_PYTHON_CLIENT_MEM_FRACTION=" in code
    proc = sandbox(code, DOC_MOCK_EXAMPLES="16", DOC_TRAIN_OVERRIDES=SHRINK_CIFAR)
    _assert_trained(proc, proc.checkout / "runs" / "cifar10", dataset="cifar10")


@pytest.mark.slow
def test_deterministic_gpu_ops(sandbox):
    code = block("test_deterministic_gpu_ops")
    assert code.startswith("XLA_FLAGS=--xla_gpu_deterministic_ops=true ")  # XLA accepts it.
    proc = sandbox(code, DOC_MOCK_EXAMPLES="16", DOC_TRAIN_OVERRIDES=SHRINK_CIFAR)
    _assert_trained(proc, proc.checkout / "runs" / "cifar10_det", devices=1)


@pytest.mark.slow
def test_rehearse_multihost(sandbox):
    code = block("test_rehearse_multihost")
    assert code.count("127.0.0.1:12345") == 1
    proc = sandbox(code.replace("127.0.0.1:12345", f"127.0.0.1:{_free_port()}"))
    _assert_trained(proc, proc.checkout / "runs" / "rehearsal", devices=8, processes=2)


def test_package_code(sandbox):
    if shutil.which("git") is None or not os.path.exists(os.path.join(ROOT, ".git")):
        pytest.skip("needs git and a git checkout")
    proc = sandbox(block("test_package_code"), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(proc.home / "jaxconv.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"train.py", "configs/default.py", "pyproject.toml", "jaxconv/__init__.py"} <= names


def test_prepare_dataset(sandbox, gcs):
    proc = sandbox(block("test_prepare_dataset"), DOC_MOCK_EXAMPLES="16", BUCKET=gcs.bucket,
                   **gcs.env)
    try:
        import tensorflow  # noqa: F401
    except ImportError:  # CI: the error names the extra the page installs one line above.
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "pip install 'jaxconv[prepare]'" in proc.stderr, proc.stderr
    else:  # TensorFlow installed: mock data, but no internet here for prepare's host check.
        offline = "is unreachable" in proc.stderr and proc.stderr.count("error:") == 1
        assert proc.returncode == 0 or offline, proc.stdout + proc.stderr
        assert offline or "Prepared cifar10: 16 train / 16 test." in proc.stdout


@pytest.mark.slow
def test_tpu_sanity_run(sandbox, gcs):
    # $BUCKET is the Cloud Storage emulator's bucket (tests/gcs_emulator.py).
    proc = sandbox(block("test_tpu_sanity_run"), BUCKET=gcs.bucket, **gcs.env)
    assert [c[:4] for c in proc.gcloud] == [["compute", "tpus", "tpu-vm", "ssh"]]
    assert "--worker=all" in proc.gcloud[0]
    _assert_trained(proc, f"gs://{gcs.bucket}/runs/digits", test_examples=297)


@pytest.mark.slow
def test_tpu_training_run(sandbox, gcs):
    # The bucket holds a prepared cifar10 (a stand-in: under the mock its files are not read).
    run_files.write_atomic(f"gs://{gcs.bucket}/tensorflow_datasets/cifar10/3.0.2/"
                           "dataset_info.json", "{}")
    proc = sandbox(block("test_tpu_training_run"), DOC_MOCK_EXAMPLES="16",
                   DOC_TRAIN_OVERRIDES=SHRINK_CIFAR, BUCKET=gcs.bucket, **gcs.env)
    log = (proc.home / "train.log").read_text()
    assert "test accuracy" in log and "Traceback" not in log, log[-3000:]
    _assert_trained(proc, f"gs://{gcs.bucket}/runs/cifar10", dataset="cifar10")


# -------------------------------------------------------------------- checking the others


def test_install_commands():
    installs = [c for c in page_commands()
                if len(c) > 1 and os.path.basename(c[0]) == "pip" and c[1] == "install"]
    requirements = {r for c in installs for r in c[2:] if not r.startswith("-")}
    named = {"jax[cuda12]", "jax[cuda13]", "jax[tpu]", ".[train]", ".[prepare]"}
    assert named <= requirements, requirements
    for requirement in requirements:
        assert doc_shim.unknown_extras(requirement) == [], requirement


def test_gcloud_commands():
    commands = [c[1:] for c in page_commands() if c[0] == "gcloud"]
    assert len(commands) >= 13  # The page names 14 (the dataset goes up with prepare).
    for words in commands:
        path = next((p for p in sorted(GCLOUD, key=len, reverse=True)
                     if words[:len(p.split())] == p.split()), None)
        assert path is not None, f"gcloud {' '.join(words)}: not checked against the reference"
        args = words[len(path.split()):]
        flags = {a.split("=", 1)[0] for a in args[:args.index("--") if "--" in args else None]
                 if a.startswith("--")}
        assert flags <= GCLOUD[path] | GCLOUD_WIDE_FLAGS, (path, flags - GCLOUD[path])


def test_accelerator_benchmark():
    commands = split_commands(block("test_accelerator_benchmark"))
    assert [c[:2] for c in commands] == [["bash", "benchmarks/gpu.sh"]] * 2
    gpu_sh = os.path.join(ROOT, "benchmarks", "gpu.sh")
    assert subprocess.run(["bash", "-n", gpu_sh]).returncode == 0
    helps = subprocess.run([sys.executable, "benchmarks/_gpu_step.py", "--help"], cwd=ROOT,
                           capture_output=True, text=True)
    assert helps.returncode == 0 and "--setup_seconds" in helps.stdout, helps.stderr


def test_every_block_is_marked_and_every_marker_names_a_test():
    blocks = read_blocks()
    assert all(kind is not None for kind, _, _ in blocks), [c for k, _, c in blocks if not k]
    marked = {(kind, name) for kind, name, _ in blocks}
    expected = {(kind, name) for kind, names in DOC_TESTS.items() for name in names}
    assert marked == expected, (marked - expected, expected - marked)
    assert all(callable(globals().get(name)) for _, name in expected)


def test_page_states_the_trainers_preemption_exit_code():
    text = open(PAGE).read()
    assert f"exits with status {training.PREEMPTED_EXIT_CODE}" in text
