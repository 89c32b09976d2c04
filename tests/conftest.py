"""Test setup: 4 fake CPU devices, set before JAX initialises (multi-device tests need them)."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# gs:// paths through gcsfs (which the Cloud Storage emulator's fixture points at 127.0.0.1),
# also where TensorFlow is installed and imported by another test: etils.epath would
# otherwise take tf.io.gfile, which goes to www.googleapis.com.
os.environ.setdefault("EPATH_USE_TF", "false")

import pytest  # noqa: E402


def pytest_configure(config):
    """With ``-n N`` and no ``--dist``, idle xdist workers steal queued tests from busy ones
    (``--dist=worksteal``: a shorter wall time). Set here, not in pyproject's addopts, so
    that ``pytest -p no:xdist`` still runs."""
    explicit = any(arg.startswith("--dist") for arg in config.invocation_params.args)
    if getattr(config.option, "dist", None) == "load" and not explicit:
        config.option.dist = "worksteal"


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """One tfds data_dir per test session: the digits dataset is prepared into it once."""
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def trained_run(digits_dir, tmp_path_factory):
    """A workdir of one short training run (default config, 30 steps, then its plots written
    as train.py writes them), shared by the inference and plotting tests (once per xdist
    worker)."""
    # Imported here, not at the top: the XLA flags above must be set before JAX starts.
    from configs import default
    from jaxconv import plots, training

    config = default.get_config()
    config.data_dir = digits_dir
    config.num_train_steps = 30
    config.progress_bar = False
    workdir = tmp_path_factory.mktemp("trained_run")
    state = training.train_and_evaluate(config, workdir)
    plots.write_all(workdir, params=state.params)
    return str(workdir)


@pytest.fixture(scope="session")
def gcs():
    """A Cloud Storage API on 127.0.0.1 (`gcs_emulator`: gcp-storage-emulator, in memory, with
    Cloud Storage's generation preconditions), this process's clients pointed at it (its
    ``env``, also for subprocesses); nothing reaches the internet."""
    import gc

    import gcs_emulator

    emulator = gcs_emulator.start()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in emulator.env.items():
            patch.setenv(key, value)
        yield emulator
        gc.collect()  # tensorboardX's bucket writers upload again when collected: while it runs.
    emulator.stop()


@pytest.fixture
def gcs_dir(gcs, request):
    """A fresh ``gs://`` path in the emulator's bucket, named after the test."""
    import re
    import uuid

    name = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:40]
    return f"gs://{gcs.bucket}/{name}-{uuid.uuid4().hex[:8]}"
