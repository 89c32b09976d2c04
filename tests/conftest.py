"""Test setup: 4 fake CPU devices, set before JAX initialises (multi-device tests need them)."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """One tfds data_dir per test session: the digits dataset is prepared into it once."""
    return str(tmp_path_factory.mktemp("tfds"))
