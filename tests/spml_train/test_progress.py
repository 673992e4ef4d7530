"""Progress: a bar on a terminal; elsewhere a log line every few seconds and one at the end."""

from __future__ import annotations

import logging

from spml_train import progress as progress_mod
from spml_train.progress import Progress


def test_logs_lines_when_not_a_terminal(caplog, monkeypatch):
    clock = iter([0.0, 10.0, 31.0, 32.0, 70.0, 71.0])
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="spml_train.progress"):
        with Progress(10, "pseudo1", unit="img", log_every_s=30) as bar:
            bar.update(1)            # t=10: too soon
            bar.update(2, loss=0.5)  # t=31: a line
            bar.update(1)            # t=32: too soon
            bar.update(6)            # t=70: a line
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "pseudo1: 3/10 img (0.10 img/s, ETA 1.2 min) loss 0.500"
    assert lines[1].startswith("pseudo1: 10/10 img")
    assert lines[2] == "pseudo1: 10 img in 71.0 s"
    assert len(lines) == 3


def test_disabled_is_silent(caplog):
    with caplog.at_level(logging.INFO, logger="spml_train.progress"):
        with Progress(5, "x", enabled=False, log_every_s=0) as bar:
            bar.update(5)
    assert not caplog.records
