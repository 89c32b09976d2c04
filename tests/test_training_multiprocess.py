"""Two JAX processes on 127.0.0.1 (gloo CPU collectives) train together to identical params."""

import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from configs import default as default_lib
from jaxconv import data, training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 4

# Each process: 2 CPU devices, its own half of every global batch, one shared workdir
# (Orbax multi-process checkpoint; metrics.json from process 0 only).
WORKER = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    sys.path.insert(0, sys.argv[5])
    from jaxconv import plots, training
    import test_training_multiprocess as t

    port, pid, workdir, data_dir = sys.argv[1:5]
    training.initialize_distributed(f"127.0.0.1:{port}", 2, int(pid))
    assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
    state = training.train_and_evaluate(t.small_config(data_dir), workdir)
    if jax.process_index() == 0:  # As train.py does: process-local params, no collective.
        plots.write_all(workdir, params=state.params)
    leaves = jax.tree_util.tree_leaves_with_path(state.params)
    np.savez(f"{workdir}/params_{pid}.npz", **{
        jax.tree_util.keystr(p): np.asarray(x.addressable_data(0)) for p, x in leaves})
""")


def small_config(data_dir: str):
    """Few steps, no distortion or dropout (so that it can be compared to one process)."""
    c = default_lib.get_config()
    c.data_dir = data_dir
    c.progress_bar = False
    c.batch_size = 16
    c.eval_batch_size = 100
    c.num_train_steps = NUM_STEPS
    c.checkpoint_every_steps = 2
    c.distortion.rotation_degrees = c.distortion.translate = 0.0
    c.distortion.scale = (1.0, 1.0)
    return c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_to_identical_params(tmp_path):
    data_dir = str(tmp_path / "tfds")
    data.ensure_prepared("digits", data_dir)  # Once, before the two processes read it.
    workdir = str(tmp_path / "run")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
               JAX_PLATFORMS="cpu")
    port = _free_port()
    procs = [
        subprocess.Popen([sys.executable, str(script), str(port), str(i), workdir, data_dir,
                          os.path.dirname(__file__)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"process {i}:\n{outputs[i][-3000:]}"

    p0, p1 = (np.load(os.path.join(workdir, f"params_{i}.npz")) for i in range(2))
    assert sorted(p0) == sorted(p1)
    for key in p0:
        np.testing.assert_array_equal(p0[key], p1[key], err_msg=key)
    assert os.path.exists(os.path.join(workdir, "metrics.json"))
    assert os.path.exists(os.path.join(workdir, "plots", "confusion.png"))  # By process 0.
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]

    # The same global batches on this process's 4 devices: same params up to float rounding
    # (bounds as in tests/test_training_parallel.py).
    single = training.train_and_evaluate(small_config(data_dir), tmp_path / "single")
    for path, x in jax.tree_util.tree_leaves_with_path(jax.device_get(single.params)):
        key = jax.tree_util.keystr(path)
        np.testing.assert_allclose(p0[key], x, atol=1e-4, rtol=1e-4, err_msg=key)
