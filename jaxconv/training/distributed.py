"""Starting multi-process JAX without guessing: ``train.py --distributed=auto|on|off``.

- ``off``: never calls ``jax.distributed.initialize``: one process (the coordinator flags are
  then an error).
- ``on``: always calls it: with ``--coordinator_address``, ``--num_processes`` and
  ``--process_id`` when given, else with JAX's own cluster detection (Cloud TPU, SLURM, Open
  MPI, Kubernetes); a machine that is none of these fails in one line.
- ``auto`` (the default): calls it with the coordinator flags when given, else when `detect`
  finds that the platform runs this program on several hosts:

  - ``TPU_PROCESS_ADDRESSES`` or ``TPU_WORKER_HOSTNAMES`` lists several hosts (GKE, and TPU
    VMs that set it), or ``MEGASCALE_NUM_SLICES`` is above 1 (multislice);
  - SLURM: ``SLURM_JOB_ID``, ``SLURM_STEP_NODELIST``, ``SLURM_NTASKS`` (above 1),
    ``SLURM_PROCID``, ``SLURM_LOCALID`` are set (what JAX's SLURM detection reads);
  - Open MPI: ``OMPI_MCA_orte_hnp_uri`` is set and ``OMPI_COMM_WORLD_SIZE`` is above 1;
  - a Cloud TPU VM whose environment says nothing (``gcloud compute tpus tpu-vm ssh
    --worker=all`` sets no variable): the VM's metadata server lists the slice's workers in
    ``worker-network-endpoints``, as JAX's ``GceTpuCluster`` reads them; several → initialize.

  JAX's detection (``jax._src.clusters``, jax 0.10.2) reads the same sources but initializes
  on any TPU VM, one host included; here a one-host machine runs alone, with no coordinator.
  The metadata server is asked only where TPU chips are attached (PCI vendor ``0x1ae0``, as
  JAX's ``hardware_utils`` checks, less the gVNIC network card that GCE VMs also carry), with
  a `METADATA_TIMEOUT_S` deadline and no retry: on a laptop or a CI runner, ``auto`` decides
  from the environment alone, in microseconds, without network.

`initialize_distributed` applies the mode; `describe_processes` is the line ``train.py``
prints at start in each process (its index and count, local and global device counts).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import urllib.request
from collections.abc import Callable, Mapping

import jax

MODES = ("auto", "on", "off")
GOOGLE_PCI_VENDOR = "0x1ae0"
GVNIC_PCI_DEVICE = "0x0042"  # Google's virtual network card, on TPU and non-TPU VMs alike.
METADATA_TIMEOUT_S = 5.0
METADATA_URL = "http://{host}/computeMetadata/v1/instance/attributes/{key}"
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
              "SLURM_LOCALID")


class DistributedArgumentError(ValueError):
    """A bad --distributed value, inconsistent coordinator flags, or a start that failed."""


@dataclasses.dataclass(frozen=True)
class Decision:
    """What ``--distributed=auto`` decided: whether to initialize, and from what."""

    initialize: bool
    reason: str


def _count(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def detect(env: Mapping[str, str], tpu_chips: int = 0,
           metadata: Callable[[str], str] | None = None) -> Decision:
    """Whether this process is one of several hosts (module docstring), from `env` (the
    environment), `tpu_chips` (attached TPU chips, `tpu_chip_count`) and `metadata` (reads a
    TPU VM metadata attribute, `read_metadata`; asked only when `tpu_chips` > 0).

    Raises:
      OSError: `metadata` failed (no answer within its deadline).
    """
    name = "TPU_PROCESS_ADDRESSES" if env.get("TPU_PROCESS_ADDRESSES") else "TPU_WORKER_HOSTNAMES"
    hosts = [h for h in env.get(name, "").split(",") if h.strip()]
    if len(hosts) > 1:
        return Decision(True, f"Cloud TPU: {len(hosts)} hosts in {name}")
    if _count(env.get("MEGASCALE_NUM_SLICES")) > 1:
        return Decision(True, f"Cloud TPU multislice: MEGASCALE_NUM_SLICES="
                              f"{env['MEGASCALE_NUM_SLICES']}")
    if all(v in env for v in SLURM_VARS) and _count(env["SLURM_NTASKS"]) > 1:
        return Decision(True, f"SLURM: {env['SLURM_NTASKS']} tasks")
    if "OMPI_MCA_orte_hnp_uri" in env and _count(env.get("OMPI_COMM_WORLD_SIZE")) > 1:
        return Decision(True, f"Open MPI: {env['OMPI_COMM_WORLD_SIZE']} processes")
    if tpu_chips > 0 and metadata is not None and "TPU_SKIP_MDS_QUERY" not in env:
        workers = [w for w in metadata("worker-network-endpoints").split(",") if w.strip()]
        if len(workers) > 1:
            return Decision(True, f"Cloud TPU VM: {len(workers)} workers in the metadata "
                                  f"server's worker-network-endpoints")
        return Decision(False, "a one-host Cloud TPU VM")
    return Decision(False, "no multi-host platform found (Cloud TPU, SLURM, Open MPI)")


def tpu_chip_count(pci_root: str = "/sys/bus/pci/devices") -> int:
    """The Google PCI devices attached, less gVNIC network cards: the TPU chips."""
    count = 0
    for vendor in glob.glob(os.path.join(pci_root, "*", "vendor")):
        try:
            with open(vendor) as f, open(os.path.join(os.path.dirname(vendor), "device")) as g:
                count += f.read().strip() == GOOGLE_PCI_VENDOR and (
                    g.read().strip() != GVNIC_PCI_DEVICE)
        except OSError:
            continue
    return count


def read_metadata(key: str, timeout: float = METADATA_TIMEOUT_S) -> str:
    """A TPU VM's metadata attribute `key`, from the GCE metadata server (no retry).

    Raises:
      OSError: no answer within `timeout` seconds, or an HTTP error.
    """
    host = os.environ.get("GCE_METADATA_IP", "metadata.google.internal")
    request = urllib.request.Request(METADATA_URL.format(host=host, key=key),
                                     headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read().decode()


def _check_flags(mode: str, given: list) -> bool:
    """Whether all three coordinator flags were given (and they fit `mode`)."""
    if mode not in MODES:
        raise DistributedArgumentError(f"--distributed={mode}: expected one of "
                                       f"{', '.join(MODES)}")
    if all(v is None for v in given):
        return False
    if any(v is None for v in given):
        raise DistributedArgumentError(
            "Give all of --coordinator_address, --num_processes and --process_id, or none "
            f"(got {given[0]!r}, {given[1]!r}, {given[2]!r}).")
    if mode == "off":
        raise DistributedArgumentError("--distributed=off starts no coordinator: drop "
                                       "--coordinator_address, --num_processes, --process_id")
    coordinator, num_processes, process_id = given
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise DistributedArgumentError(
            f"Need 0 <= process_id < num_processes, got {process_id} and {num_processes}.")
    return True


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    mode: str = "auto",
) -> str:
    """Starts multi-process JAX as `mode` says (module docstring); call before anything
    else uses jax.

    With all three coordinator arguments (e.g. two processes on one machine:
    ``"127.0.0.1:12345"``, 2, and 0 or 1; CPU collectives use gloo), initializes with them.

    Returns:
      Why it did or did not initialize, for the start line.

    Raises:
      DistributedArgumentError: a bad `mode`, only some of the three arguments, values that
        do not fit, ``off`` with them, a TPU VM whose metadata server does not answer
        (``auto``), or ``on`` where JAX finds no cluster.
    """
    given = [coordinator_address, num_processes, process_id]
    if _check_flags(mode, given):
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id)
        return f"--coordinator_address={coordinator_address}"
    if mode == "off":
        return "--distributed=off"
    if mode == "auto":
        try:
            decision = detect(os.environ, tpu_chip_count(), read_metadata)
        except OSError as err:
            raise DistributedArgumentError(
                f"--distributed=auto: TPU chips are attached but the metadata server did not "
                f"say how many hosts run this program ({err}); give --distributed=on on a "
                f"multi-host slice, --distributed=off on one host") from None
        if not decision.initialize:
            return f"--distributed=auto: {decision.reason}"
    try:
        jax.distributed.initialize()  # JAX's own cluster detection finds the coordinator.
    except (ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DistributedArgumentError(
            f"--distributed={mode}: jax.distributed.initialize() failed ({first}); give "
            f"--coordinator_address, --num_processes and --process_id") from None
    return (f"--distributed={mode}: {decision.reason}" if mode == "auto"
            else "--distributed=on: JAX's cluster detection")


def describe_processes() -> str:
    """This process's index and count, its local and all devices (the start line)."""
    return (f"process {jax.process_index()} of {jax.process_count()}: "
            f"{jax.local_device_count()} local device(s), {jax.device_count()} in all "
            f"({jax.default_backend()})")
