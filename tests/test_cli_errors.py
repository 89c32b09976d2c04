"""`jaxconv.cli_errors`: a Ctrl-C that lands in a garbage-collector callback or a finalizer
(where Python prints "Exception ignored ... Traceback" and goes on) is remembered and kept
off the terminal; every other unraisable error is still printed."""

import gc
import os
import signal
import subprocess
import sys
import textwrap

# A child process: signal handlers and sys.unraisablehook stay out of pytest's own.
_CHILD = textwrap.dedent("""
    import gc, os, signal, sys
    from jaxconv import cli_errors
    cli_errors.quiet_logging()
    if sys.argv[1] == "remember":
        cli_errors.remember_interrupts()
    else:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sent = []
    def callback(phase, info):  # Like jax's _xla_gc_callback: Python code run by gc.
        if phase == "start" and not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)  # The handler runs inside the callback.
    gc.callbacks.append(callback)
    gc.collect()
    gc.callbacks.remove(callback)
    class Broken:
        def __del__(self):
            raise ValueError("a finalizer's own error")
    Broken()
    print("interrupted:", cli_errors.interrupted() if sys.argv[1] == "remember" else None)
""")


def _child(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True,
                          text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__))))


def test_a_remembered_interrupt_in_a_gc_callback_prints_no_traceback():
    done = _child("remember")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "interrupted: True"
    assert "KeyboardInterrupt" not in done.stderr
    # Other unraisable errors are still reported.
    assert "ValueError: a finalizer's own error" in done.stderr


def test_an_interrupt_nobody_remembers_is_still_reported():
    done = _child("default")
    assert done.returncode == 0, done.stderr
    assert "KeyboardInterrupt" in done.stderr and "Traceback" in done.stderr


def test_remember_interrupts_raises_keyboard_interrupt():
    from jaxconv import cli_errors
    previous = signal.getsignal(signal.SIGINT)
    try:
        cli_errors.remember_interrupts()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            gc.collect()  # Any bytecode: the handler runs here.
            raised = False
        except KeyboardInterrupt:
            raised = True
        assert raised and cli_errors.interrupted()
    finally:
        signal.signal(signal.SIGINT, previous)
        cli_errors._INTERRUPTS.clear()
