"""A run's files, in a local directory or in a bucket: the one path layer of run records.

Everything a run reads or writes (``run.json``, ``metrics.json``, ``history.jsonl``, the
checkpoints' listing, the plots, the lock) goes through this module, on ``etils.epath``
paths as Orbax uses them, so that ``--workdir gs://bucket/run`` takes no second code path:
a local path is expanded (``~``) and made absolute, a URL (``gs://...``; gcsfs reads and
writes it, the ``train`` extra installs it) is kept as it is.

What stays atomic where (`write_atomic`, `append_line`):

- local: a file is replaced by writing a temporary file, ``fsync`` and ``os.replace``; a line
  is appended in place and ``fsync``-ed (a crash can tear the last line only: readers drop
  a torn line).
- bucket: every object write is atomic (Cloud Storage makes an upload visible whole or not
  at all), so a file is one upload; there is no append on object storage, so a line is
  appended by uploading the whole object again, old lines plus the new one (atomic as well,
  at a cost that grows with the file: fine for the stream's hundreds of lines).

Listings and existence checks on a bucket ask the server each time (gcsfs's listing cache,
which another process's writes do not invalidate, is cleared first).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil

from etils import epath

# gs:// through gcsfs, the backend these files' guarantees were tested with: where TensorFlow
# is installed (the `prepare` extra), etils.epath would otherwise take tf.io.gfile, whose
# Cloud Storage client ignores an emulator and reports errors its own way. A user's own
# setting wins; epath reads it at its first gs:// path.
os.environ.setdefault("EPATH_USE_TF", "false")

Path = epath.Path


def is_url(path: str | os.PathLike) -> bool:
    """Whether `path` is a URL (``gs://bucket/...``), not a local path."""
    return "://" in os.fspath(path)


class BucketAccessError(OSError):
    """A ``gs://`` path this process cannot reach (no credentials): one line, no retries."""


def path(p: str | os.PathLike) -> epath.Path:
    """`p` as an ``epath.Path``: a URL as it is (trailing ``/`` dropped), a local path with
    ``~`` expanded, made absolute.

    Raises:
      BucketAccessError: a ``gs://`` path without Google Cloud credentials (`check_credentials`).
    """
    text = os.fspath(p)
    if is_url(text):
        check_credentials(text)
        return epath.Path(text.rstrip("/") if not text.endswith("://") else text)
    return epath.Path(os.path.abspath(os.path.expanduser(text)))


def bucket_of(p: str | os.PathLike) -> str | None:
    """The bucket name of a ``gs://`` path, or None for a local path."""
    s = os.fspath(p)
    return s.split("://", 1)[1].split("/", 1)[0] if is_url(s) else None


def check_credentials(p: str | os.PathLike) -> None:
    """Fails at once when a ``gs://`` path cannot be reached for want of credentials.

    Without them gcsfs falls back to anonymous requests and retries them for a minute or
    more before an error that does not say why; google.auth says it at once (a missing
    credentials file, no application-default credentials, no metadata server). Skipped for
    a Cloud Storage emulator (``STORAGE_EMULATOR_HOST``), which needs none.

    Raises:
      BucketAccessError: one line naming the bucket and the fix (`bucket_problem`).
    """
    text = os.fspath(p)
    bucket = bucket_of(text)
    if text.startswith("gs://") and bucket:
        problem = _credentials_problem(bucket, os.environ.get("STORAGE_EMULATOR_HOST"),
                                       os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))
        if problem:
            raise BucketAccessError(problem)


@functools.cache
def _credentials_problem(bucket: str, emulator: str | None, key_file: str | None) -> str | None:
    """`check_credentials`'s answer, once per process (keyed on what decides it)."""
    if emulator:
        return None
    try:
        import google.auth  # gcsfs's and google-cloud-storage's dependency (the train extra).
    except ImportError:
        return None  # gcsfs is missing too: epath names the extra to install.
    try:
        google.auth.default()
    except Exception as err:  # noqa: BLE001 - google.auth raises its own types.
        return bucket_problem(bucket, err)
    return None


def _fresh(p: epath.Path) -> epath.Path:
    """Clears gcsfs's listing cache for a bucket path (another process may have written)."""
    if is_url(p):
        with contextlib.suppress(Exception):  # Not every fsspec backend has a cache.
            epath.backend.fsspec_backend.fs(os.fspath(p)).invalidate_cache()
    return p


def exists(p: str | os.PathLike) -> bool:
    """Whether a file or directory exists at `p`."""
    return _fresh(path(p)).exists()


def is_dir(p: str | os.PathLike) -> bool:
    """Whether `p` is a directory (on a bucket: a prefix with objects under it)."""
    return _fresh(path(p)).is_dir()


def is_file(p: str | os.PathLike) -> bool:
    """Whether `p` is a file (an object)."""
    q = _fresh(path(p))
    return q.exists() and not q.is_dir()


def listdir(p: str | os.PathLike) -> list[str]:
    """The names in directory `p`, sorted.

    Raises:
      FileNotFoundError: `p` does not exist (NotADirectoryError: it is a file, locally).
    """
    q = _fresh(path(p))
    if is_url(q) and not q.is_dir():
        raise FileNotFoundError(os.fspath(q))
    return sorted(c.name for c in q.iterdir())


def read_text(p: str | os.PathLike) -> str:
    """The text of file `p` (UTF-8, undecodable bytes replaced).

    Raises:
      FileNotFoundError: no such file.
    """
    q = _fresh(path(p))
    if is_url(q):
        if not q.exists() or q.is_dir():
            raise FileNotFoundError(os.fspath(q))
        return q.read_bytes().decode("utf-8", errors="replace")
    with open(q, encoding="utf-8", errors="replace") as f:
        return f.read()


def write_atomic(p: str | os.PathLike, content: str) -> str:
    """Writes `content` to `p` so that a reader sees the old or the new file, never a part
    (module docstring); returns `p` as a string."""
    q = path(p)
    if is_url(q):
        q.write_text(content)  # One upload: atomic.
        return os.fspath(q)
    tmp = f"{q}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, q)
    return os.fspath(q)


def append_line(p: str | os.PathLike, line: str) -> None:
    """Appends `line` (no newline in it) and a newline to file `p` (created if missing);
    locally in place, on a bucket by uploading the whole object again (module docstring)."""
    q = path(p)
    if is_url(q):
        try:
            old = read_text(q)
        except FileNotFoundError:
            old = ""
        q.write_text(old + line + "\n")
        return
    with open(q, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def makedirs(p: str | os.PathLike) -> epath.Path:
    """Creates directory `p` and its parents (nothing to create on a bucket); returns it."""
    q = path(p)
    if not is_url(q):
        q.mkdir(parents=True, exist_ok=True)
    return q


def remove(p: str | os.PathLike) -> None:
    """Removes file or directory tree `p`; a missing one is no error."""
    q = _fresh(path(p))
    if is_url(q):
        if q.is_dir():
            q.rmtree()
        elif q.exists():
            q.unlink()
        return
    local = os.fspath(q)
    if os.path.isdir(local) and not os.path.islink(local):
        shutil.rmtree(local)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(local)


def rename(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Renames `src` to `dst` (on a bucket: copied, then deleted, object by object, so not
    atomic there; our record never needs that to be)."""
    path(src).rename(path(dst))


def upload_dir(local: str | os.PathLike, dst: str | os.PathLike, *,
               last: str | None = None) -> list[str]:
    """Copies the files under local directory `local` to `dst` (a bucket path or another
    local directory), each file one atomic write, the files named `last` after all others
    (a reader that takes a folder without them for unfinished never sees a part); returns
    the written paths."""
    files = sorted((os.path.relpath(os.path.join(root, name), local)
                    for root, _, names in os.walk(local) for name in names),
                   key=lambda rel: (os.path.basename(rel) == last, rel))
    written = []
    for rel in files:
        target = path(dst) / rel
        if not is_url(target):
            target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(epath.Path(os.path.join(local, rel)).read_bytes())
        written.append(os.fspath(target))
    return written


def describe(err: BaseException) -> str:
    """The first line of `err`, for one-line messages."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def bucket_problem(bucket: str, err: BaseException, *, action: str = "write objects in",
                   permissions: str = "storage.objects.create and storage.objects.delete") -> str:
    """What is wrong with `bucket`, in one line, from a Cloud Storage client error `err`
    (google.api_core's errors carry the HTTP status as ``code``)."""
    text, code = describe(err), getattr(err, "code", None)
    if code == 404:
        return f"bucket gs://{bucket} does not exist (or is not visible to these credentials)"
    if code in (401, 403):
        return (f"no permission to {action} bucket gs://{bucket} ({permissions} are needed):"
                f" {text}")
    if type(err).__module__.startswith("google.auth"):
        return (f"no Google Cloud credentials to reach bucket gs://{bucket} ({text}): run `gcloud "
                f"auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS")
    return f"cannot reach bucket gs://{bucket} ({text}): offline, or the bucket name is wrong?"
