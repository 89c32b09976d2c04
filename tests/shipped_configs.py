"""`load_config`: a shipped config (``configs/<name>.py``) with test overrides."""

import importlib


def load_config(name: str = "default", **overrides):
    """``configs.<name>.get_config()`` without a progress bar, then `overrides`.

    Keys of nested dicts are joined by ``__``: ``load_config(optimizer__learning_rate=0.1)``.
    """
    c = importlib.import_module(f"configs.{name}").get_config()
    c.progress_bar = False
    for dotted, value in overrides.items():
        node = c
        *path, last = dotted.split("__")
        for part in path:
            node = node[part]
        node[last] = value
    return c
