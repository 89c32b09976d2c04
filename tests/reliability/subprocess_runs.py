"""``train.py`` run as a subprocess by the reliability tests: its environment and one run."""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 240


def env(cache_dir, **extra):
    """One CPU device with train.py's own flags, a persistent compilation cache shared by the
    test's subprocesses (each restart then takes seconds), plus `extra`."""
    return dict(os.environ, **extra, JAX_PLATFORMS="cpu", XLA_FLAGS="",
                JAX_COMPILATION_CACHE_DIR=str(cache_dir),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def run(command, env):
    """Runs `command` in the repository root; returns (exit code, stdout + stderr)."""
    proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT)
    return proc.returncode, proc.stdout + proc.stderr
