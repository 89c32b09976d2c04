"""One trainer per workdir in a bucket: a lock object created with a generation precondition.

A bucket has no ``flock``. Cloud Storage's preconditions give the same guarantee: an upload
with ``ifGenerationMatch=0`` succeeds only if the object does not exist, so of several
trainers creating ``gs://bucket/run/train.lock`` at once exactly one wins; every later
write or delete of the lock names the generation its writer last saw, so that it fails
(HTTP 412) if anyone else wrote the object since.

- The object holds its holder's host, pid, start time and the time of its last refresh
  (JSON). While it holds the lock, the trainer rewrites it every `REFRESH_S` seconds from a
  daemon thread (conditioned on its own generation).
- A second trainer that finds the object gets `WorkdirBusyError` (the same one-line error as
  on a local workdir) naming the holder, unless the lock is stale:
  - its holder stopped refreshing more than `STALE_S` seconds ago (by the server's
    ``updated`` time of the object: a preempted VM, a ``kill -9``), or
  - its holder ran on this host and its pid is no longer running (a ``kill -9`` here: no
    need to wait).

  A stale lock is taken over with a warning naming the old holder, by a write conditioned
  on the stale generation: of two trainers taking it over at once, one wins.
- If a refresh finds the object changed (another trainer took over a lock this process
  still thought it held: it had not refreshed for `STALE_S` seconds, e.g. a VM suspended
  that long), the thread logs a warning and stops refreshing; `lost` becomes True. `check`
  (called before every checkpoint write and every log step) asks the server whether the
  object is still this holder's generation and raises `LockLost`, naming the new holder, if
  it is not.
- Releasing deletes the object (conditioned on its generation); a lock left behind by a
  killed trainer is stale as above.

What it relies on: the host clocks are roughly right (the stale age compares the server's
``updated`` time with this host's clock; keep `STALE_S` far above any clock skew), and
``google-cloud-storage`` (a dependency of gcsfs, the ``train`` extra) with credentials that
may create and delete objects in the bucket.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time
from typing import Any

from absl import logging
from google.api_core import exceptions  # google-cloud-storage's (gcsfs's) dependency.

from jaxconv import run_files

STALE_S = 300.0  # A lock not refreshed for this long is taken over (see module docstring).
REFRESH_S = 30.0  # How often the holder rewrites its lock.
TIMEOUT_S = 15.0  # Deadline of each request, retries included (offline: fail fast).


class LockBusy(Exception):
    """The lock is held by a live trainer; the message is its holder's line."""


class LockLost(Exception):
    """Another trainer took over the lock; the message names the new holder."""


class BucketError(OSError):
    """The bucket cannot be used (missing, no permission, no credentials, offline)."""


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, run by another user.
        return True
    return True


def describe_holder(record: dict[str, Any]) -> str:
    """The holder's line, as on a local lock: ``pid P on host H, started T``."""
    return (f"pid {record.get('pid', '?')} on host {record.get('host', '?')}, started "
            f"{record.get('started', '?')}")


class BucketLock:
    """The lock object ``<workdir>/<name>`` in a bucket (module docstring).

    Args:
      path: the lock object's ``gs://`` path.
      stale_s: seconds without refresh after which the lock is taken over.
      refresh_s: seconds between refreshes while held.
    """

    def __init__(self, path: str, *, stale_s: float = STALE_S, refresh_s: float = REFRESH_S):
        from google.cloud import storage  # Optional: only bucket workdirs need it.
        from google.cloud.storage.retry import DEFAULT_RETRY

        self.path, self.stale_s, self.refresh_s = path, stale_s, refresh_s
        bucket, _, name = path.split("://", 1)[1].partition("/")
        self.bucket_name, self.name = bucket, name
        self._storage, self._retry = storage, DEFAULT_RETRY.with_timeout(TIMEOUT_S)
        self._client: Any = None
        self.generation: int | None = None
        self.record: dict[str, Any] = {}
        self.lost = False
        self._mutex = threading.Lock()  # A refresh and a `check` do not interleave.
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _blob(self):
        if self._client is None:
            self._client = self._storage.Client()
        return self._client.bucket(self.bucket_name).blob(self.name)

    def _write(self, if_generation_match: int) -> None:
        self.record["refreshed"] = _now()
        blob = self._blob()
        blob.upload_from_string(json.dumps(self.record), content_type="application/json",
                                if_generation_match=if_generation_match, retry=self._retry,
                                timeout=TIMEOUT_S)
        self.generation = blob.generation

    def _read(self) -> tuple[dict[str, Any], int, float] | None:
        """The holder's record, the object's generation and its age in seconds; None if gone."""
        bucket = self._blob().bucket
        blob = bucket.get_blob(self.name, retry=self._retry, timeout=TIMEOUT_S)  # Metadata.
        if blob is None:
            return None
        try:  # The content of the generation whose time we have.
            data = blob.download_as_bytes(if_generation_match=blob.generation,
                                          retry=self._retry, timeout=TIMEOUT_S)
        except (exceptions.NotFound, exceptions.PreconditionFailed):  # Changed meanwhile.
            return self._read()
        try:
            record = json.loads(data)
            record = record if isinstance(record, dict) else {}
        except ValueError:
            record = {}
        age = time.time() - blob.updated.timestamp() if blob.updated else 0.0
        return record, blob.generation, age

    def _stale(self, record: dict[str, Any], age: float) -> str | None:
        if age > self.stale_s:
            return f"not refreshed for {age:.0f} s (> {self.stale_s:.0f} s)"
        pid = record.get("pid")
        if record.get("host") == socket.gethostname() and isinstance(pid, int) and (
                not _pid_alive(pid)):
            return "its process is no longer running on this host"
        return None

    def acquire(self) -> BucketLock:
        """Creates the lock object, or takes over a stale one; starts the refresh thread.

        Raises:
          LockBusy: a live trainer holds it (the message is its holder's line).
          BucketError: the bucket cannot be used (names the bucket and the reason).
        """
        self.record = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
        try:
            try:
                self._write(if_generation_match=0)
            except exceptions.PreconditionFailed:
                self._take_over_if_stale()
        except (exceptions.GoogleAPICallError, exceptions.RetryError, OSError) as err:
            raise BucketError(run_files.bucket_problem(self.bucket_name, err)) from err
        except Exception as err:  # noqa: BLE001 - google.auth raises its own types.
            if type(err).__module__.startswith("google.auth"):
                raise BucketError(run_files.bucket_problem(self.bucket_name, err)) from err
            raise
        self._stop.clear()
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True,
                                        name=f"refresh {self.path}")
        self._thread.start()
        return self

    def _take_over_if_stale(self) -> None:
        found = self._read()
        if found is None:  # Released in between: try once more to create it.
            self._write(if_generation_match=0)
            return
        holder, generation, age = found
        why = self._stale(holder, age)
        if why is None:
            raise LockBusy(describe_holder(holder))
        try:
            self._write(if_generation_match=generation)
        except exceptions.PreconditionFailed:  # Another trainer took it over first.
            found = self._read()
            raise LockBusy(describe_holder(found[0] if found else holder)) from None
        logging.warning("took over the stale lock %s of %s (%s)", self.path,
                        describe_holder(holder), why)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                with self._mutex:
                    self._write(if_generation_match=self.generation)
            except exceptions.PreconditionFailed:
                self.lost = True
                logging.warning("lost the lock %s: another trainer took it over (this one did "
                                "not refresh it for %.0f s); stopping before the next "
                                "checkpoint", self.path, self.stale_s)
                return
            except Exception as err:  # noqa: BLE001 - keep refreshing through a glitch.
                logging.warning("could not refresh the lock %s: %s", self.path,
                                run_files.describe(err))

    def check(self) -> None:
        """Raises `LockLost` if the lock is no longer this holder's: the refresh thread saw it
        taken over, or the object on the server has another generation now (one metadata
        request; a request that fails proves nothing and is only logged).

        Raises:
          LockLost: another trainer holds it (the message is its holder's line).
        """
        if not self.lost:
            try:
                with self._mutex:
                    blob = self._blob().bucket.get_blob(self.name, retry=self._retry,
                                                        timeout=TIMEOUT_S)
                    self.lost = blob is None or blob.generation != self.generation
            except Exception as err:  # noqa: BLE001 - a glitch: the refresh thread still watches.
                logging.warning("could not check the lock %s: %s", self.path,
                                run_files.describe(err))
        if self.lost:
            found = self._read()
            raise LockLost(describe_holder(found[0]) if found else "its object was deleted")

    def release(self) -> None:
        """Stops refreshing and deletes the lock object (if it is still ours)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        if not self.lost:
            try:
                self._blob().delete(if_generation_match=self.generation, retry=self._retry,
                                    timeout=TIMEOUT_S)
            except Exception as err:  # noqa: BLE001 - stale in STALE_S at worst.
                logging.warning("could not delete the lock %s: %s", self.path,
                                run_files.describe(err))

