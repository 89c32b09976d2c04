"""What an unprepared built-in dataset says: one error, no TFDS variant warning, and the
install command that works from a source checkout (issue 20)."""

import logging

import pytest

from jaxconv import extras
from jaxconv.data import sources


def test_an_unprepared_builtin_is_one_error_without_variant_warnings(tmp_path, caplog):
    (tmp_path / "cifar10" / "3.0.2").mkdir(parents=True)  # An empty variant folder.
    with caplog.at_level(logging.WARNING), pytest.raises(FileNotFoundError) as err:
        sources.ensure_prepared("cifar10", str(tmp_path))
    assert not [r for r in caplog.records if "Variant folder" in r.getMessage()]
    message = str(err.value)
    assert "python -m jaxconv.data.prepare --dataset cifar10" in message
    assert f"pip install -e '{extras.source_checkout()}[prepare]'" in message


def test_the_source_hint_is_empty_outside_a_checkout(monkeypatch):
    monkeypatch.setattr(extras, "source_checkout", lambda: None)
    assert extras.source_install_hint("prepare") == ""
