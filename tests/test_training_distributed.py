"""``--distributed=auto|on|off`` (`jaxconv.training.distributed`): the auto decision on fake
environments, the TPU chip count on a fake PCI tree, the metadata server on 127.0.0.1, and
the modes through ``train.py`` (one ``error:`` line each where they cannot start). The
two-process ``--distributed=on`` run is in tests/reliability/test_gcs_two_processes.py."""

import http.server
import os
import socket
import subprocess
import sys
import threading

import pytest

from jaxconv.training import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLURM = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-4]", "SLURM_NTASKS": "4",
         "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}


def _no_metadata(key):
    raise AssertionError(f"asked the metadata server for {key}")


@pytest.mark.parametrize("env, chips, endpoints, initialize, reason", [
    ({}, 0, None, False, "no multi-host platform found"),
    ({"TPU_WORKER_HOSTNAMES": "w0"}, 0, None, False, "no multi-host platform found"),
    ({"TPU_WORKER_HOSTNAMES": "w0,w1,w2"}, 0, None, True, "3 hosts in TPU_WORKER_HOSTNAMES"),
    ({"TPU_PROCESS_ADDRESSES": "a:1,b:1", "TPU_WORKER_HOSTNAMES": "w0"}, 0, None, True,
     "2 hosts in TPU_PROCESS_ADDRESSES"),
    ({"MEGASCALE_NUM_SLICES": "2"}, 0, None, True, "MEGASCALE_NUM_SLICES=2"),
    ({"MEGASCALE_NUM_SLICES": "1"}, 0, None, False, "no multi-host"),
    (SLURM, 0, None, True, "SLURM: 4 tasks"),
    ({**SLURM, "SLURM_NTASKS": "1"}, 0, None, False, "no multi-host"),
    ({k: v for k, v in SLURM.items() if k != "SLURM_LOCALID"}, 0, None, False, "no multi"),
    ({"OMPI_MCA_orte_hnp_uri": "1;tcp://10.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "2"}, 0, None,
     True, "Open MPI: 2 processes"),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, 0, None, False, "no multi-host"),
    ({}, 4, "10.0.0.1,10.0.0.2", True, "2 workers in the metadata server's"),
    ({}, 4, "10.0.0.1", False, "a one-host Cloud TPU VM"),
    ({"TPU_SKIP_MDS_QUERY": "1"}, 4, None, False, "no multi-host"),
])
def test_auto_decision(env, chips, endpoints, initialize, reason):
    asked = []

    def metadata(key):
        if endpoints is None:
            _no_metadata(key)
        asked.append(key)
        return endpoints

    decision = distributed.detect(env, chips, metadata)
    assert decision.initialize is initialize and reason in decision.reason, decision
    assert asked == ([] if endpoints is None else ["worker-network-endpoints"])


def test_without_tpu_chips_the_metadata_server_is_never_asked():
    assert distributed.detect({}, 0, _no_metadata) == distributed.Decision(
        False, "no multi-host platform found (Cloud TPU, SLURM, Open MPI)")


def test_tpu_chip_count_reads_the_pci_tree(tmp_path):
    devices = [("0x1ae0", "0x005e")] * 4 + [("0x1ae0", "0x0042"), ("0x10de", "0x2330")]
    for i, (vendor, device) in enumerate(devices):  # 4 TPU v4 chips, gVNIC, a GPU.
        folder = tmp_path / f"0000:00:0{i}.0"
        folder.mkdir()
        (folder / "vendor").write_text(vendor + "\n")
        (folder / "device").write_text(device + "\n")
    assert distributed.tpu_chip_count(str(tmp_path)) == 4
    assert distributed.tpu_chip_count(str(tmp_path / "none")) == 0


def test_auto_decides_one_process_here_without_asking_the_network():
    # No TPU chips on this machine: the environment alone decides (no metadata probe).
    assert distributed.tpu_chip_count() == 0
    decision = distributed.detect(os.environ, distributed.tpu_chip_count(), _no_metadata)
    assert not decision.initialize


class _Metadata(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name.
        ok = (self.headers.get("Metadata-Flavor") == "Google" and self.path ==
              "/computeMetadata/v1/instance/attributes/worker-network-endpoints")
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"w-0:u:10.0.0.1,w-1:u:10.0.0.2" if ok else b"")

    def log_message(self, *args):
        pass


def test_read_metadata_from_a_metadata_server(monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{server.server_port}")
        endpoints = distributed.read_metadata("worker-network-endpoints")
        assert endpoints == "w-0:u:10.0.0.1,w-1:u:10.0.0.2"
        assert distributed.detect({}, 4, distributed.read_metadata).reason == (
            "Cloud TPU VM: 2 workers in the metadata server's worker-network-endpoints")
        with pytest.raises(OSError):
            distributed.read_metadata("agent-worker-number")  # 404.
    finally:
        server.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{s.getsockname()[1]}")  # Closed.
        with pytest.raises(OSError):
            distributed.read_metadata("worker-network-endpoints", timeout=1.0)
        # A server that accepts and never answers: the timeout ends the wait (TimeoutError).
        # Without it urlopen would wait forever; the thread's join is only a hang guard.
        s.listen()
        outcome = []

        def read():
            try:
                distributed.read_metadata("worker-network-endpoints", timeout=0.5)
            except OSError as err:
                outcome.append(err)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(60)
        assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError), outcome


START = "from jaxconv.training import distributed; print(distributed.initialize_distributed(" \
        "mode={mode!r})); import jax; print(jax.process_count())"


@pytest.mark.parametrize("mode, extra, rc, out", [
    ("off", SLURM, 0, "--distributed=off\n1\n"),
    # It tried (JAX then finds no TPU runtime here; with SLURM's variables it would connect).
    ("auto", {}, 1, "--distributed=auto: jax.distributed.initialize() failed"),
])
def test_off_never_initializes_where_auto_would(mode, extra, rc, out):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TPU_WORKER_HOSTNAMES="w0,w1", **extra)
    proc = subprocess.run([sys.executable, "-c", START.format(mode=mode)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == rc, proc.stderr[-2000:]
    assert out in (proc.stdout if rc == 0 else proc.stderr)


@pytest.mark.parametrize("flags, line", [
    (["--distributed=maybe"], "error: flag --distributed=maybe: value should be one of "
                              "<auto|on|off>"),
    (["--distributed=on"], "error: --distributed=on: jax.distributed.initialize() failed "
                           "(coordinator_address should be defined.); give "
                           "--coordinator_address, --num_processes and --process_id"),
    (["--distributed=off", "--coordinator_address=127.0.0.1:1", "--num_processes=2",
      "--process_id=0"], "error: --distributed=off starts no coordinator: drop "
                         "--coordinator_address, --num_processes, --process_id"),
])
def test_train_py_refuses_in_one_line(tmp_path, flags, line):
    proc = subprocess.run([sys.executable, "train.py", "--config", "configs/default.py",
                           "--workdir", str(tmp_path / "run"), *flags],
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert [x for x in proc.stderr.splitlines() if x.startswith("error:")] == [line]
    assert not (tmp_path / "run").exists()
