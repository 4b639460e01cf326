"""LeRobotDataset v3.0 read/write (pyarrow + PyAV), dataset statistics and the expert recorder.

Exports are resolved lazily so that light modules (the recorder's worker processes) can import
``robopolicy.data.<module>`` without pulling in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LeRobotDataset": "robopolicy.data.dataset",
    "LeRobotDatasetWriter": "robopolicy.data.writer",
    "DatasetMeta": "robopolicy.data.metadata",
    "VideoEncoding": "robopolicy.data.video",
    "aggregate_stats": "robopolicy.data.stats",
    "record_dataset": "robopolicy.data.record",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'robopolicy.data' has no attribute {name!r}")
