"""A Cloud Storage API on 127.0.0.1 for tests: `gcp-storage-emulator`, in memory, no internet.

`start` runs this file as a subprocess on a free loopback port with one bucket and returns an
`Emulator` whose `env` points gcsfs (through ``etils.epath``), tensorstore (Orbax's arrays)
and google-cloud-storage at it with anonymous credentials:

- ``STORAGE_EMULATOR_HOST``, ``TENSORSTORE_GCS_HTTP_URL``: the emulator's URL.
- ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``: gcsfs's default file system first asks the
  bucket's type over gRPC, which an emulator does not serve; each such probe waits 60 s.
- ``EPATH_USE_TF=false``: with TensorFlow installed, ``etils.epath`` would read ``gs://``
  through ``tf.io.gfile``, which ignores the emulator and goes to www.googleapis.com.
- ``GOOGLE_CLOUD_PROJECT``, ``NO_GCE_CHECK``: no lookup of a project or of a metadata server.

The emulator (2026.7) ignores the generation preconditions that real Cloud Storage enforces
(``ifGenerationMatch`` on uploads and deletes) and that the bucket lock relies on, so this
file, run as a program, adds them before it serves: a write or delete whose
``ifGenerationMatch`` does not equal the object's generation (0: the object must not exist)
gets HTTP 412, as from Cloud Storage; and a download answers with the object's generation in
``x-goog-generation``, as Cloud Storage does (tensorstore reads it to retry a conditional
write of an OCDBT manifest after a 412: without it, "Malformed StorageGeneration"). The
server is single-threaded, so a check and its write cannot interleave with another request.

It also denies every request on bucket `DENIED` with HTTP 403 and Cloud Storage's wording
("... does not have storage.objects.create access ..."), naming the permission the request
needs, as for credentials without that permission (the emulator has no authentication, so
missing credentials cannot be played).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from http import HTTPStatus

BUCKET = "bkt"
DENIED = "denied"  # Every request on this bucket: HTTP 403 (module docstring).
PERMISSIONS = {"GET": "storage.objects.get", "POST": "storage.objects.create",
               "PUT": "storage.objects.create", "DELETE": "storage.objects.delete"}


@dataclasses.dataclass
class Emulator:
    """A running emulator: its URL, the bucket, the environment that points clients at it."""

    url: str
    bucket: str
    process: subprocess.Popen
    env: dict[str, str]

    def stop(self) -> None:
        """Stops the emulator process (started by `start`)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_env(url: str) -> dict[str, str]:
    """The environment variables that point the storage clients at `url` (module docstring)."""
    return {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "EPATH_USE_TF": "false",
            "GOOGLE_CLOUD_PROJECT": "test", "NO_GCE_CHECK": "true"}


def start(bucket: str = BUCKET, timeout: float = 30.0) -> Emulator:
    """Starts the emulator on a free loopback port with `bucket`; returns once it answers.

    Raises:
      RuntimeError: it did not answer within `timeout` seconds (its output is quoted).
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # Its log goes to a file: a pipe nobody reads fills up and blocks the (single) server thread.
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, __file__, str(port), bucket],
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/storage/v1/b/{bucket}", timeout=1).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                log.seek(0)
                output = log.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"the storage emulator did not start: {output}") from None
            time.sleep(0.05)
    return Emulator(url, bucket, process, client_env(url))


def _serve(port: int, bucket: str) -> None:
    """Serves the emulator with generation preconditions (module docstring) until killed."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects
    from gcp_storage_emulator.storage import Storage

    current = {}  # The request being handled (the server handles one at a time).

    class PreconditionFailed(Exception):
        pass

    def generation(storage, bucket_name, name) -> str:
        try:
            return str(storage.get_file_obj(bucket_name, name)["generation"])
        except NotFound:
            return "0"

    def check(storage, bucket_name, name) -> None:
        wanted = current["request"].query.get("ifGenerationMatch")
        if wanted and generation(storage, bucket_name, name) != wanted[0]:
            raise PreconditionFailed

    create_file = Storage.create_file

    def checked_create(self, bucket_name, file_name, *args, **kwargs):
        check(self, bucket_name, file_name)
        return create_file(self, bucket_name, file_name, *args, **kwargs)

    Storage.create_file = checked_create

    def with_preconditions(handler, method):
        def handle(request, response, storage, *args, **kwargs):
            current["request"] = request
            params = request.params or {}
            if params.get("bucket_name") == DENIED:
                needed = ("storage.objects.list" if method == "GET" and "object_id" not in params
                          else PERMISSIONS.get(method, "storage.objects.get"))
                response.status = HTTPStatus.FORBIDDEN
                response.json({"error": {"code": 403, "message": (
                    f"anonymous caller does not have {needed} access to the Google Cloud "
                    f"Storage bucket. Permission '{needed}' denied on resource (or it may not "
                    f"exist).")}})
                return None
            try:
                if method == "DELETE":
                    check(storage, params["bucket_name"], params["object_id"])
                if method == "GET" and "object_id" in params:  # Cloud Storage's headers.
                    found = generation(storage, params["bucket_name"], params["object_id"])
                    if found != "0":
                        response["x-goog-generation"] = found
                        response["x-goog-metageneration"] = "1"
                return handler(request, response, storage, *args, **kwargs)
            except PreconditionFailed:
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "conditionNotMet: "
                                         "At least one of the pre-conditions you specified "
                                         "did not hold."}})
        return handle

    for _, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            handlers[method] = with_preconditions(handler, method)
    objects.insert = with_preconditions(objects.insert, "POST")  # The router's fallback.
    emulator = server.create_server("127.0.0.1", port, True, bucket)
    emulator.run()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2])
    os._exit(0)
