"""Recording during training: a callback for :func:`deltaprop.app.train.fit`.

``fit(..., callbacks=[cb])`` calls ``cb.on_step(info)`` with ``info.net``, ``info.trace``
and ``info.grads`` of every step (before the update) and ``cb.on_epoch(info)`` after each
epoch.  :class:`RecordCallback` merges the step's statistics into the epoch's
:class:`~deltaprop.stats.record.Record` (no extra forward or backward pass: it reads the
step's own trace and error vectors) and, at the end of the epoch, appends
``(epoch, record)`` to :attr:`RecordCallback.history`, so users can watch the backward
statistics move away from the initialisation theory epoch by epoch.
"""

from __future__ import annotations

from .record import QUANTITIES, record_pass

__all__ = ["RecordCallback"]


class RecordCallback:
    """Accumulate a Record per epoch from the training loop's own passes.

    Parameters
    ----------
    quantities, bins, weight_grads, cross
        As in :func:`deltaprop.stats.record_pass` (histograms off by default: training
        batches are small and the counting runs on the host).
    every : int
        Record every ``every``-th step only (1 = all).
    """

    def __init__(self, *, quantities=QUANTITIES, bins=None, weight_grads=True, cross=True,
                 every=1):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.options = dict(quantities=quantities, bins=bins, weight_grads=weight_grads,
                            cross=cross)
        self.every = int(every)
        self.history: list = []
        self._current = None

    def on_step(self, info) -> None:
        if info.step % self.every:
            return
        part = record_pass(info.net, info.trace, info.grads.delta, **self.options)
        self._current = part if self._current is None else self._current.merge(part)

    def on_epoch(self, info) -> None:
        if self._current is not None:
            self.history.append((info.epoch, self._current.numpy()))
        self._current = None

    def summaries(self, q="delta") -> list[dict]:
        """Per epoch and layer: ``{"epoch", "layer", "mean", "second_moment", ...}``."""
        rows = []
        for epoch, rec in self.history:
            for l in range(1, rec.L + 1):
                rows.append({"epoch": epoch, "layer": l, **rec.layer_summary(l, q)})
        return rows
