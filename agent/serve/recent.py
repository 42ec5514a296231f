"""The last N predictions, kept so that a label arriving later (Feedback) can be scored against them.

Only what scoring needs is kept: the model version, the top-1 class and its confidence (classification)
or the predicted value (regression). Never the inputs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from agent.serve.host import ModelKey

DEFAULT_SIZE = 10_000


# Slots: the agent keeps up to DEFAULT_SIZE of these for its whole life, and a per-instance __dict__
# would be a third of each entry (307 bytes with it, 235 without: about 0.7 MB at 10,000).
@dataclass(slots=True)
class Prediction:
    key: ModelKey
    task: str
    rows: int                # batch rows of the request: feedback takes one label, so only 1 can be scored
    top1: int | None         # classification
    confidence: float | None
    value: float | None      # regression: the first output value
    labelled: bool = False


class UnknownRequest(KeyError):
    pass


class RecentPredictions:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self._items: OrderedDict[str, Prediction] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, request_id: str, prediction: Prediction) -> None:
        with self._lock:
            self._items[request_id] = prediction
            if len(self._items) > self.size:
                self._items.popitem(last=False)  # the oldest goes first

    def get(self, request_id: str) -> Prediction | None:
        with self._lock:
            return self._items.get(request_id)

    def claim(self, request_id: str) -> Prediction | None:
        """Mark the prediction labelled and return it; None when it was labelled already.

        Raises UnknownRequest when the id is not among the last `size` predictions.
        """
        with self._lock:
            prediction = self._items.get(request_id)
            if prediction is None:
                raise UnknownRequest(request_id)
            if prediction.labelled:
                return None
            prediction.labelled = True
            return prediction

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
