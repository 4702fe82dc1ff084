"""A pool of scratch arrays shared by the convolution kernels' Python drivers."""

from __future__ import annotations

import threading
import weakref

import numpy as np


class BufferPool:
    """Scratch arrays kept for reuse between calls.

    Large fresh allocations are mmap'ed by the C allocator and page-faulted in on first touch, which costs as
    much as the copy that fills them; reusing the padded/phase-split buffers avoids that. Arrays are handed back
    explicitly (``give``) or when an owner object dies (``give_on_death``); at most ``max_bytes`` are kept.
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self._free: dict[tuple, list[np.ndarray]] = {}
        self._bytes = 0
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        key = (tuple(int(s) for s in shape), np.dtype(dtype).str)
        with self._lock:
            stack = self._free.get(key)
            if stack:
                arr = stack.pop()
                self._bytes -= arr.nbytes
                return arr
        return np.empty(key[0], dtype=key[1])

    def give(self, arr: np.ndarray) -> None:
        key = (arr.shape, arr.dtype.str)
        with self._lock:
            if self._bytes + arr.nbytes > self.max_bytes:
                return
            stack = self._free.setdefault(key, [])
            if len(stack) < 4:
                stack.append(arr)
                self._bytes += arr.nbytes

    def give_on_death(self, owner: object, arr: np.ndarray) -> None:
        weakref.finalize(owner, self.give, arr)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._bytes = 0


POOL = BufferPool()
