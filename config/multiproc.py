"""prometheus_client's multiprocess collector, minus the files still being created.

A process creates its metrics file empty and then sizes it; a scrape that reads it in between
fails in prometheus_client (`struct.error`, a 500). Such a file has no samples yet, so it is
left out of that scrape."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable

from prometheus_client import multiprocess

# The first field of a file: how many of its bytes are used (prometheus_client.mmap_dict).
HEADER_BYTES = 8


class ProcessFilesCollector(multiprocess.MultiProcessCollector):
    def collect(self) -> Iterable[object]:
        files = [
            path
            for path in glob.glob(os.path.join(self._path, "*.db"))
            if _size(path) >= HEADER_BYTES
        ]
        return self.merge(files, accumulate=True)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:  # its process ended and the file was removed
        return 0
