"""Progress of the trainer's long loops: a bar on a terminal, a log line now and then otherwise.

Every stage can run for minutes at VOC scale (the CAM classifier, stage 1, pseudo labels for
10,582 images, the stage-2 head, a multi-scale + CRF evaluation), and cluster jobs write to files,
where a bar is noise: there a line ``desc: n/total (rate/s, ETA)`` goes to the log every
``log_every_s`` seconds, and one when the loop ends.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("spml_train.progress")


class Progress:
    """``with Progress(total, "pseudo1", enabled=cfg.run.progress) as bar: ... bar.update(1, loss=0.3)``."""

    def __init__(self, total: int, desc: str, *, enabled: bool = True, unit: str = "it",
                 log_every_s: float = 30.0, initial: int = 0):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.n = initial
        self.log_every_s = log_every_s
        self.t0 = self.t_log = time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
        self._start = initial

    def update(self, n: int = 1, **postfix: float) -> None:
        self.n += n
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix({k: f"{v:.3f}" for k, v in postfix.items()}, refresh=False)
            self.bar.update(n)
            return
        now = time.perf_counter()
        if self.enabled and now - self.t_log >= self.log_every_s:
            self.t_log = now
            log.info("%s", self._line(now, postfix))

    def _line(self, now: float, postfix: dict) -> str:
        rate = (self.n - self._start) / max(now - self.t0, 1e-9)
        eta = (self.total - self.n) / rate if rate > 0 else float("inf")
        extra = "".join(f" {k} {v:.3f}" for k, v in postfix.items())
        eta_s = "?" if eta == float("inf") else f"{eta / 60:.1f} min"
        return f"{self.desc}: {self.n}/{self.total} {self.unit} ({rate:.2f} {self.unit}/s, ETA {eta_s}){extra}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled:
            log.info("%s: %d %s in %.1f s", self.desc, self.n - self._start, self.unit,
                     time.perf_counter() - self.t0)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
