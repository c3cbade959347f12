"""The archive's disk (R2): warn before it is full, and make a failed write an alert, not a log
line. Nothing already written is touched."""

from __future__ import annotations

import asyncio
import enum
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["StorageLevel", "StorageWatch", "storage_level"]

logger = logging.getLogger(__name__)


class StorageLevel(enum.StrEnum):
    OK = "ok"
    LOW = "low"
    """Free space is under the setting: recording goes on, but someone must act now."""
    WRITE_FAILED = "write_failed"
    """A recording write failed (disk full, I/O error): evidence is being lost."""


def storage_level(free_bytes: int, min_free_bytes: int) -> StorageLevel:
    return StorageLevel.LOW if free_bytes < min_free_bytes else StorageLevel.OK


class StorageWatch:
    """Checks the archive's free space every ``interval`` and reports each change of level."""

    def __init__(
        self,
        root: Path,
        *,
        min_free_bytes: int,
        on_change: Callable[[StorageLevel, int, int], None],
        interval: float = 10.0,
        repeat_every: float = 300.0,
    ) -> None:
        self._root = root
        self._min_free = min_free_bytes
        self._on_change = on_change
        self._interval = interval
        self._repeat_every = repeat_every
        self._reported_at = float("-inf")
        self.level: StorageLevel | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="storage-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def check(self) -> StorageLevel:
        """Read the free space; report a change of level, and a low level again every
        ``repeat_every`` until it is fixed (so that a wall opened later shows it too)."""
        usage = shutil.disk_usage(self._root)
        level = storage_level(usage.free, self._min_free)
        now = time.monotonic()
        repeat = level is StorageLevel.LOW and now - self._reported_at >= self._repeat_every
        if level is not self.level or repeat:
            self._reported_at = now
            if level is StorageLevel.LOW:
                logger.warning(
                    "archive %s: %d MB free, under the %d MB set",
                    self._root,
                    usage.free >> 20,
                    self._min_free >> 20,
                )
            self.level = level
            self._on_change(level, usage.free, usage.total)
        return level

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.check)
            except OSError:
                logger.exception("archive %s: free space could not be read", self._root)
            await asyncio.sleep(self._interval)
