"""The LeRobotDataset on-disk layout (v3.0 written, v2.x read) and crash-safe file writes.

Every file the writer produces goes through :func:`atomic_write`: it is written under a temporary
name in the same folder and renamed over the target, so a killed process leaves either the old
file or the new one, never half of one. Temporary names end in ``.tmp`` and are swept on resume.
"""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

CODEBASE_VERSION = "v3.0"
READABLE_VERSIONS = ("v2.0", "v2.1", "v3.0")

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = EPISODES_DIR + "/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
RECORDING_PATH = "meta/robopolicy_recording.json"
"""robopolicy-record's bookkeeping (which trial made each episode); not part of lerobot's format."""

# v2.x: one parquet (and one mp4 per camera) per episode, metadata in JSON lines.
LEGACY_EPISODES_PATH = "meta/episodes.jsonl"
LEGACY_TASKS_PATH = "meta/tasks.jsonl"
LEGACY_EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"

DEFAULT_CHUNK_SIZE = 1000
"""Files per chunk-XXX folder before the next chunk starts (lerobot's default)."""
DEFAULT_DATA_FILE_SIZE_MB = 100
DEFAULT_VIDEO_FILE_SIZE_MB = 200

# Columns every frame carries besides the user's features, in lerobot's order.
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
CAMERA_DTYPES = ("image", "video")
NUMERIC_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")

TMP_SUFFIX = ".tmp"


def next_chunk_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """The (chunk, file) after this one: files fill a chunk folder, then the next chunk starts."""
    if file_index >= chunks_size - 1:
        return chunk_index + 1, 0
    return chunk_index, file_index + 1


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_json(obj: Any, path: str | Path) -> None:
    """Atomically write ``obj`` (numpy values allowed) as indented JSON, like lerobot's write_json."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(_to_jsonable(obj), indent=4, ensure_ascii=False))


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; errors name the file and say what is wrong (missing, not UTF-8, where
    the JSON breaks)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start} of {len(data)}): "
            f"the file is damaged"
        ) from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if not text.strip():
            why = " (the file is empty)"
        elif e.pos >= len(text.rstrip()):
            why = " (the text ends early: the file was cut short)"
        else:
            why = ""
        raise ValueError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}{why}") from e


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from e
    return rows


def remove_stale_tmp_files(root: str | Path) -> list[Path]:
    """Delete temporary files a killed writer left behind; returns what was removed."""
    removed = []
    for p in Path(root).rglob(f"*{TMP_SUFFIX}"):
        if p.is_file():
            p.unlink()
            removed.append(p)
    return removed
