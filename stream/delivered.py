"""Remember the ids a consumer delivered lately, to drop repeats of them in bounded memory.

``crm.alerts`` is at least once: after a crash the worker may publish an alert again, with
the same ``alert_id``. Consumers that hand alerts on (``crm alerts tail``, the API's live
stream) drop such a repeat when they delivered that id among their last ``capacity``.

>>> delivered = DeliveredIds(capacity=2)
>>> [delivered.first_time(alert_id) for alert_id in ("a", "b", "a", "c", "a")]
[True, True, False, True, True]
"""

from __future__ import annotations

from collections import deque


class DeliveredIds:
    """The last ``capacity`` ids delivered (first deliveries only)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._order: deque[str] = deque()
        self._ids: set[str] = set()

    def __contains__(self, delivered_id: object) -> bool:
        return delivered_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def first_time(self, delivered_id: str) -> bool:
        """Remember ``delivered_id``; false when it is among the ids remembered already."""
        if delivered_id in self._ids:
            return False
        self.add(delivered_id)
        return True

    def add(self, delivered_id: str) -> None:
        if delivered_id in self._ids:
            return
        if len(self._order) >= self.capacity:
            self._ids.discard(self._order.popleft())
        self._order.append(delivered_id)
        self._ids.add(delivered_id)
