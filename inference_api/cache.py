"""The bounded LRU cache of loaded things (pipelines, upscaler models), with eviction callbacks."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    loads: int = 0
    evictions: int = 0
    load_seconds: float = 0.0


class LruCache(Generic[V]):
    """LRU keyed by name. Mutated only on the worker thread; read from anywhere."""

    def __init__(self, capacity: int, on_evict: Callable[[V], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError("cache capacity must be at least 1")
        self.capacity = capacity
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self._on_evict = on_evict
        self.stats = CacheStats()

    def get(self, name: str) -> V | None:
        with self._lock:
            item = self._items.get(name)
            if item is not None:
                self._items.move_to_end(name)
                self.stats.hits += 1
            return item

    def peek(self, name: str) -> V | None:
        """The item without touching its recency or the hit count."""
        with self._lock:
            return self._items.get(name)

    def evict(self, name: str) -> bool:
        with self._lock:
            item = self._items.pop(name, None)
            if item is not None:
                self.stats.evictions += 1
        if item is not None and self._on_evict:
            self._on_evict(item)
        return item is not None

    def put(self, name: str, item: V, load_seconds: float = 0.0) -> None:
        with self._lock:
            self._items[name] = item
            self._items.move_to_end(name)
            self.stats.loads += 1
            self.stats.load_seconds += load_seconds
        self._evict_down_to(self.capacity)

    def make_room(self) -> None:
        """Evict until one more item fits: load the next model only after the last one's memory is freed."""
        self._evict_down_to(self.capacity - 1)

    def _evict_down_to(self, size: int) -> None:
        # Callbacks run outside the lock: freeing a pipeline's memory can take a while.
        evicted: list[V] = []
        with self._lock:
            while len(self._items) > max(size, 0):
                _, old = self._items.popitem(last=False)
                evicted.append(old)
                self.stats.evictions += 1
        for old in evicted:
            if self._on_evict:
                self._on_evict(old)

    def clear(self) -> int:
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        for old in items:
            if self._on_evict:
                self._on_evict(old)
        return len(items)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._items
