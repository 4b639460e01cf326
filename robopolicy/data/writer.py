"""``LeRobotDatasetWriter``: writes a LeRobotDataset v3.0 the way lerobot 0.4-0.6 lays it out.

Layout (same keys, dtypes, templates and chunk/file indexing as lerobot): ``data/chunk-XXX/
file-YYY.parquet`` with many episodes per file (a row group per episode; a new file once the size
limit would be crossed), ``videos/<key>/chunk-XXX/file-YYY.mp4`` per camera with episodes end to
end, or PNG bytes inside the parquet when ``use_videos=False``; ``meta/info.json``,
``meta/stats.json``, ``meta/tasks.parquet`` and ``meta/episodes/chunk-XXX/file-YYY.parquet``.

Crash safety: ``save_episode`` rewrites whole files under temporary names and renames them, in the
order data -> videos -> episode metadata -> tasks -> stats -> info.json. ``info.json`` is the commit
point: an episode exists once its totals are in info.json. A killed process therefore loses at
most the episode being saved; ``LeRobotDatasetWriter.resume(root)`` drops whatever that episode
left behind (parquet rows, video tail, metadata rows, files) and continues after the last
committed episode. One process writes; episodes may be produced anywhere (see ``record.py``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from robopolicy.data import layout
from robopolicy.data.images import IMAGE_STRUCT, encode_png
from robopolicy.data.metadata import read_info, read_parquet, repair_hint
from robopolicy.data.stats import STAT_KEYS, Stats, aggregate_stats, image_stats, vector_stats
from robopolicy.data.video import VideoEncoding, encode_frames, remux, video_duration_s

_LOCK_NAME = ".robopolicy-writer.lock"


def _hf_feature(ft: dict) -> dict:
    """The `datasets` feature description lerobot stores in the parquet schema metadata."""
    if ft["dtype"] == "image":
        return {"_type": "Image"}
    value = {"dtype": ft["dtype"], "_type": "Value"}
    shape = list(ft["shape"])
    if shape == [1]:
        return value
    for n in reversed(shape):
        value = {"feature": value, "length": int(n), "_type": "List"}
    return value


def _arrow_type(ft: dict) -> pa.DataType:
    if ft["dtype"] == "image":
        return IMAGE_STRUCT
    t = pa.from_numpy_dtype(np.dtype(ft["dtype"])) if ft["dtype"] != "string" else pa.string()
    shape = list(ft["shape"])
    if shape == [1] or ft["dtype"] == "string":
        return t
    for n in reversed(shape):
        t = pa.list_(t, int(n))
    return t


def _to_arrow(values: np.ndarray, ft: dict) -> pa.Array:
    shape = list(ft["shape"])
    if shape == [1] or ft["dtype"] == "string":
        return pa.array(
            values.reshape(len(values)) if ft["dtype"] != "string" else list(values), type=_arrow_type(ft)
        )
    arr: pa.Array = pa.array(np.ascontiguousarray(values).reshape(-1))
    for n in reversed(shape):
        arr = pa.FixedSizeListArray.from_arrays(arr, int(n))
    return arr


def _tasks_table(tasks: list[str]) -> pa.Table:
    """tasks.parquet as lerobot 0.6 writes it (pandas frame indexed by the task string)."""
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
    }
    schema = pa.schema(
        [("task_index", pa.int64()), ("task", pa.string())],
        metadata={b"pandas": json.dumps(pandas_meta).encode()},
    )
    return pa.table({"task_index": list(range(len(tasks))), "task": tasks}, schema=schema)


def _file_mb(path: Path) -> float:
    return path.stat().st_size / 2**20 if path.is_file() else 0.0


def _stats_from_row(row: dict, features: dict) -> dict[str, Stats]:
    out: dict[str, Stats] = {}
    for key in features:
        for s in STAT_KEYS:
            v = row.get(f"stats/{key}/{s}")
            if v is not None:
                out.setdefault(key, {})[s] = np.asarray(v)
    return out


def data_schema(features: dict[str, dict]) -> pa.Schema:
    """The data parquet schema of these info.json features (videos live in mp4 files)."""
    cols = [(k, _arrow_type(f)) for k, f in features.items() if f["dtype"] != "video"]
    hf = {"info": {"features": {k: _hf_feature(f) for k, f in features.items() if f["dtype"] != "video"}}}
    return pa.schema(cols, metadata={b"huggingface": json.dumps(hf).encode()})


def episode_stats(cols: dict[str, np.ndarray], features: dict[str, dict], fps: float) -> dict[str, Stats]:
    """Per-episode stats of every non-string feature from the episode's columns (cameras as uint8
    (N, H, W, 3)); timestamps from frame_index / fps in float64, as lerobot computes them."""
    n = len(cols["frame_index"])
    out: dict[str, Stats] = {}
    for key, ft in features.items():
        if ft["dtype"] in layout.CAMERA_DTYPES:
            out[key] = image_stats(cols[key])
        elif ft["dtype"] != "string":
            x = np.asarray(cols["frame_index"]) / float(fps) if key == "timestamp" else cols[key]
            out[key] = vector_stats(np.asarray(x).reshape(n, -1))
    return out


def stats_columns(ep_stats: dict[str, Stats]) -> dict[str, list]:
    """An episode's stats as the ``stats/<feature>/<stat>`` columns of its meta/episodes row."""
    return {f"stats/{key}/{s}": np.asarray(st[s]).tolist() for key, st in ep_stats.items() for s in STAT_KEYS}


def write_parquet(tables: list[pa.Table], path: Path) -> None:
    """Atomically write ``tables`` into one parquet file, one row group each (one per episode, like lerobot)."""
    with layout.atomic_write(path) as tmp:
        with pq.ParquetWriter(tmp, tables[0].schema, compression="snappy", use_dictionary=True) as pw:
            for t in tables:
                pw.write_table(t)


def write_tasks(tasks: list[str], path: Path) -> None:
    with layout.atomic_write(path) as tmp:
        pq.write_table(_tasks_table(tasks), tmp, compression="snappy")


def lock_dataset(root: Path) -> int:
    """Take the one-writer lock of a dataset folder; returns the descriptor for ``unlock_dataset``."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / _LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(f"{root}: another LeRobotDatasetWriter has this dataset open") from None
    return fd


def unlock_dataset(fd: int, root: Path) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    (root / _LOCK_NAME).unlink(missing_ok=True)


class LeRobotDatasetWriter:
    """Write episodes into a LeRobotDataset v3.0 folder; see the module docstring.

    ``create(root, fps, features, use_videos=True, robot_type=None)`` starts a dataset (or, with
    ``resume=True``, continues one already there); ``add_frame(frame, task)`` buffers a frame;
    ``save_episode()`` commits the buffered episode; ``finalize()`` releases the folder.
    """

    def __init__(self, root: Path, info: dict, video: VideoEncoding):
        """Use ``create`` or ``resume``."""
        self.root = Path(root)
        self.info = info
        self.video = video
        self.tasks: list[str] = []
        self._rows: list[dict] = []  # committed episode metadata rows (with stats/ columns)
        self._stats: dict[str, Stats] | None = None
        self._data_loc: tuple[int, int] | None = None  # current data file (chunk, file)
        self._data_tables: list[pa.Table] = []
        self._video_loc: dict[str, tuple[int, int]] = {}
        self._meta_loc: tuple[int, int] | None = None
        self._meta_rows: list[dict] = []  # rows of the current episodes metadata file
        self._buffer: dict[str, list] = {}
        self._buffer_tasks: list[str] = []
        self._finalized = False
        self._schema = data_schema(self.features)
        self._lock_fd = self._acquire_lock()
        self._clear_buffer()

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        root: str | Path,
        fps: float,
        features: dict[str, dict],
        use_videos: bool = True,
        robot_type: str | None = None,
        *,
        resume: bool = False,
        video: VideoEncoding | None = None,
        chunks_size: int = layout.DEFAULT_CHUNK_SIZE,
        data_files_size_in_mb: float = layout.DEFAULT_DATA_FILE_SIZE_MB,
        video_files_size_in_mb: float = layout.DEFAULT_VIDEO_FILE_SIZE_MB,
    ) -> "LeRobotDatasetWriter":
        """Start a dataset at ``root``.

        ``features`` maps names to ``{"dtype", "shape", "names"}`` like lerobot's (without the
        standard timestamp/index columns, which are added). Camera features (dtype "image" or
        "video", shape (H, W, 3)) are stored as mp4 when ``use_videos`` else as PNG in the parquet.
        If ``root`` already holds a dataset: with ``resume=True`` it is reopened (fps and features
        must match), otherwise FileExistsError.
        """
        root = Path(root)
        video = video or VideoEncoding()
        full = cls._build_features(features, use_videos, fps, video)
        if (root / layout.INFO_PATH).exists():
            if not resume:
                raise FileExistsError(
                    f"{root}: a dataset already exists here; pass resume=True to continue it"
                )
            w = cls.resume(root, video=video)
            w._check_compatible(fps, full)
            return w
        if root.exists() and any(p for p in root.iterdir() if p.name != _LOCK_NAME):
            raise FileExistsError(f"{root}: folder exists, is not empty and holds no meta/info.json")
        if not float(fps) > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        info = {
            "codebase_version": layout.CODEBASE_VERSION,
            "fps": int(fps) if float(fps).is_integer() else float(fps),
            "features": full,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": int(chunks_size),
            "data_files_size_in_mb": data_files_size_in_mb,
            "video_files_size_in_mb": video_files_size_in_mb,
            "data_path": layout.DATA_PATH,
            "video_path": layout.VIDEO_PATH if any(f["dtype"] == "video" for f in full.values()) else None,
            "robot_type": robot_type,
            "splits": {},
        }
        root.mkdir(parents=True, exist_ok=True)
        w = cls(root, info, video)
        layout.write_json(info, root / layout.INFO_PATH)
        return w

    @staticmethod
    def _build_features(features: dict, use_videos: bool, fps: float, video: VideoEncoding) -> dict:
        if not isinstance(features, dict) or not features:
            raise ValueError("features must be a non-empty dict name -> {dtype, shape, names}")
        out: dict[str, dict] = {}
        for key, ft in features.items():
            if key in layout.DEFAULT_FEATURES or key == "task":
                raise ValueError(f"feature {key!r} is reserved: the writer fills it itself")
            if "/" in key:
                raise ValueError(f"feature {key!r}: names cannot contain '/'")
            if not isinstance(ft, dict) or "dtype" not in ft or "shape" not in ft:
                raise ValueError(f"feature {key!r} needs 'dtype' and 'shape', got {ft!r}")
            dtype, shape = ft["dtype"], [int(s) for s in ft["shape"]]
            if dtype in layout.CAMERA_DTYPES:
                if len(shape) != 3 or shape[2] != 3:
                    raise ValueError(f"camera feature {key!r}: shape must be (H, W, 3), got {shape}")
                names = ft.get("names") or ["height", "width", "channels"]
                entry = {"dtype": "video" if use_videos else "image", "shape": shape, "names": names}
                if use_videos:
                    entry["info"] = video.info(shape[0], shape[1], fps)
                out[key] = entry
            elif dtype in layout.NUMERIC_DTYPES or dtype == "string":
                if not shape or any(s <= 0 for s in shape):
                    raise ValueError(f"feature {key!r}: shape must be positive integers, got {shape}")
                out[key] = {"dtype": dtype, "shape": shape, "names": ft.get("names")}
            else:
                raise ValueError(f"feature {key!r}: unsupported dtype {dtype!r}")
        for key, ft in layout.DEFAULT_FEATURES.items():
            out[key] = dict(ft)
        return out

    def _check_compatible(self, fps: float, features: dict) -> None:
        if float(self.info["fps"]) != float(fps):
            raise ValueError(f"{self.root}: existing dataset has fps {self.info['fps']}, asked for {fps}")
        old = {k: (f["dtype"], list(f["shape"])) for k, f in self.info["features"].items()}
        new = {k: (f["dtype"], list(f["shape"])) for k, f in features.items()}
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(
                f"{self.root}: existing dataset's features differ from the requested ones at {diff}"
            )

    @classmethod
    def resume(cls, root: str | Path, video: VideoEncoding | None = None) -> "LeRobotDatasetWriter":
        """Reopen a v3.0 dataset to append episodes, first discarding what an interrupted
        ``save_episode`` left behind (see the module docstring). Videos keep the encoding recorded
        in info.json; a different ``video`` is an error (episodes share mp4 files)."""
        root = Path(root)
        info = read_info(root)
        if info.get("codebase_version") != layout.CODEBASE_VERSION:
            raise ValueError(
                f"{root / layout.INFO_PATH}: can only append to {layout.CODEBASE_VERSION} datasets, "
                f"this one is {info.get('codebase_version')!r}"
            )
        recorded = next(
            (
                f["info"]
                for f in info.get("features", {}).values()
                if f.get("dtype") == "video" and "info" in f
            ),
            None,
        )
        if recorded is not None:
            enc = VideoEncoding.from_info(recorded)
            if video is not None:
                h, w = recorded.get("video.height", 1), recorded.get("video.width", 1)
                asked = video.info(h, w, info["fps"])
                diff = sorted(k for k in asked if k in recorded and asked[k] != recorded[k])
                if diff:
                    raise ValueError(
                        f"{root / layout.INFO_PATH}: videos were encoded with other settings ({diff}); "
                        f"resume without a video encoding or with the recorded one"
                    )
            video = enc
        w = cls(root, info, video or VideoEncoding())
        w._repair()
        return w

    # ------------------------------------------------------------------ locking
    def _acquire_lock(self) -> int:
        return lock_dataset(self.root)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            unlock_dataset(self._lock_fd, self.root)
            self._lock_fd = None

    # ------------------------------------------------------------------ properties
    @property
    def features(self) -> dict[str, dict]:
        return self.info["features"]

    @property
    def fps(self) -> float:
        return self.info["fps"]

    @property
    def num_episodes(self) -> int:
        return int(self.info["total_episodes"])

    @property
    def num_frames(self) -> int:
        return int(self.info["total_frames"])

    @property
    def episode_tasks(self) -> list[list[str]]:
        """Tasks of each committed episode, in order."""
        return [list(r["tasks"]) for r in self._rows]

    @property
    def _user_keys(self) -> list[str]:
        return [k for k in self.features if k not in layout.DEFAULT_FEATURES]

    @property
    def _video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "video"]

    # ------------------------------------------------------------------ frames
    def _clear_buffer(self) -> None:
        self._buffer = {k: [] for k in self._user_keys}
        self._buffer_tasks = []

    def clear_episode(self) -> None:
        """Discard the frames buffered since the last ``save_episode``."""
        self._clear_buffer()

    @property
    def episode_length(self) -> int:
        """Frames buffered for the episode in progress."""
        return len(self._buffer_tasks)

    def add_frame(self, frame: dict[str, Any], task: str) -> None:
        """Buffer one frame: a value for every feature given to ``create`` (cameras as uint8
        (H, W, 3), or (3, H, W), or float in [0, 1]) and the task instruction."""
        if self._finalized:
            raise RuntimeError(f"{self.root}: writer is finalized")
        if not isinstance(task, str) or not task:
            raise ValueError(f"task must be a non-empty string, got {task!r}")
        unknown = sorted(set(frame) - set(self._user_keys))
        if unknown:
            raise ValueError(f"frame has key(s) {unknown} that are not features ({self._user_keys})")
        missing = sorted(set(self._user_keys) - set(frame))
        if missing:
            raise ValueError(f"frame is missing feature(s) {missing}")
        values = {}
        for key in self._user_keys:
            values[key] = self._validate_value(key, frame[key])
        for key, v in values.items():
            self._buffer[key].append(v)
        self._buffer_tasks.append(task)

    def _validate_value(self, key: str, value: Any) -> np.ndarray:
        ft = self.features[key]
        if hasattr(value, "detach"):  # torch tensor
            value = value.detach().cpu().numpy()
        if ft["dtype"] in layout.CAMERA_DTYPES:
            img = np.asarray(value)
            h, w, c = ft["shape"]
            if img.shape == (c, h, w) and img.shape != (h, w, c):
                img = img.transpose(1, 2, 0)
            if img.shape != (h, w, c):
                raise ValueError(f"feature {key!r}: image shape {img.shape}, expected {(h, w, c)} (H, W, C)")
            if img.dtype != np.uint8:
                if not np.issubdtype(img.dtype, np.floating):
                    raise ValueError(
                        f"feature {key!r}: images must be uint8 or float in [0, 1], got {img.dtype}"
                    )
                if img.size and (img.min() < 0 or img.max() > 1):
                    raise ValueError(f"feature {key!r}: float image values must lie in [0, 1]")
                img = np.round(img * 255).astype(np.uint8)
            return img
        if ft["dtype"] == "string":
            return np.asarray(str(value), dtype=object)
        arr = np.asarray(value)
        shape = tuple(ft["shape"])
        if arr.shape != shape and not (shape == (1,) and arr.shape == ()):
            raise ValueError(f"feature {key!r}: value of shape {arr.shape}, expected {shape}")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise ValueError(f"feature {key!r}: non-finite value {arr}")
        return arr.astype(np.dtype(ft["dtype"])).reshape(shape)

    # ------------------------------------------------------------------ saving
    def save_episode(self) -> int:
        """Commit the buffered frames as the next episode; returns its episode_index."""
        if self._finalized:
            raise RuntimeError(f"{self.root}: writer is finalized")
        n = len(self._buffer_tasks)
        if n == 0:
            raise ValueError("save_episode: no frames were added since the last save")
        ep_index, start = self.num_episodes, self.num_frames
        fps = float(self.fps)
        new_tasks = [t for t in dict.fromkeys(self._buffer_tasks) if t not in self.tasks]
        tasks = self.tasks + new_tasks
        task_of = {t: i for i, t in enumerate(tasks)}

        cols: dict[str, np.ndarray] = {k: np.stack(v) for k, v in self._buffer.items()}
        frame_index = np.arange(n, dtype=np.int64)
        ts64 = frame_index / fps
        cols["timestamp"] = ts64.astype(np.float32)
        cols["frame_index"] = frame_index
        cols["episode_index"] = np.full(n, ep_index, dtype=np.int64)
        cols["index"] = start + frame_index
        cols["task_index"] = np.array([task_of[t] for t in self._buffer_tasks], dtype=np.int64)

        ep_stats = episode_stats(cols, self.features, fps)
        row: dict[str, Any] = {
            "episode_index": ep_index,
            "tasks": list(dict.fromkeys(self._buffer_tasks)),
            "length": n,
        }
        row.update(self._write_data(cols, n, start))
        for key in self._video_keys:
            row.update(self._write_video(key, cols[key]))
        row.update(stats_columns(ep_stats))
        self._write_episode_row(row)
        if new_tasks:
            write_tasks(tasks, self.root / layout.TASKS_PATH)
        self.tasks = tasks
        self._stats = ep_stats if self._stats is None else aggregate_stats([self._stats, ep_stats])
        layout.write_json(self._stats, self.root / layout.STATS_PATH)
        self._rows.append(row)
        # Commit point: the episode exists once info.json counts it.
        self.info["total_episodes"] = ep_index + 1
        self.info["total_frames"] = start + n
        self.info["total_tasks"] = len(tasks)
        self.info["splits"] = {"train": f"0:{ep_index + 1}"}
        layout.write_json(self.info, self.root / layout.INFO_PATH)
        self._clear_buffer()
        return ep_index

    def _write_data(self, cols: dict[str, np.ndarray], n: int, start: int) -> dict:
        arrays = []
        for key, ft in self.features.items():
            if ft["dtype"] == "video":
                continue
            if ft["dtype"] == "image":
                arrays.append(
                    pa.StructArray.from_arrays(
                        [
                            pa.array([encode_png(img) for img in cols[key]], pa.binary()),
                            pa.array([f"frame-{i:06d}.png" for i in range(n)], pa.string()),
                        ],
                        fields=list(IMAGE_STRUCT),
                    )
                )
            else:
                arrays.append(_to_arrow(cols[key], ft))
        table = pa.Table.from_arrays(arrays, schema=self._schema)
        if self._data_loc is None:
            self._data_loc = (0, 0)
        else:
            path = self._data_path(self._data_loc)
            frames_in_file = sum(t.num_rows for t in self._data_tables)
            size = _file_mb(path)
            if frames_in_file and size + size / frames_in_file * n >= float(
                self.info["data_files_size_in_mb"]
            ):
                self._data_loc = layout.next_chunk_file(*self._data_loc, self.info["chunks_size"])
                self._data_tables = []
        self._data_tables.append(table)
        self._write_parquet(self._data_tables, self._data_path(self._data_loc))
        return {
            "data/chunk_index": self._data_loc[0],
            "data/file_index": self._data_loc[1],
            "dataset_from_index": start,
            "dataset_to_index": start + n,
        }

    _write_parquet = staticmethod(write_parquet)

    def _data_path(self, loc: tuple[int, int]) -> Path:
        return self.root / self.info["data_path"].format(chunk_index=loc[0], file_index=loc[1])

    def _video_path(self, key: str, loc: tuple[int, int]) -> Path:
        return self.root / self.info["video_path"].format(
            video_key=key, chunk_index=loc[0], file_index=loc[1]
        )

    def _write_video(self, key: str, frames: np.ndarray) -> dict:
        tmp_dir = self.root / "videos"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        ep_file = tmp_dir / f".episode-{uuid.uuid4().hex[:8]}.mp4{layout.TMP_SUFFIX}"
        try:
            encode_frames(frames, ep_file, float(self.fps), self.video)
            ep_dur = video_duration_s(ep_file)
            loc = self._video_loc.get(key)
            if loc is not None:
                cur = self._video_path(key, loc)
                if _file_mb(cur) + _file_mb(ep_file) >= float(self.info["video_files_size_in_mb"]):
                    loc = layout.next_chunk_file(*loc, self.info["chunks_size"])
            else:
                loc = (0, 0)
            path = self._video_path(key, loc)
            if path.is_file() and self._video_loc.get(key) == loc:
                with layout.atomic_write(path) as tmp:
                    from_ts = remux([(path, None), (ep_file, None)], tmp)[1]
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(ep_file, path)
                from_ts = 0.0
        finally:
            ep_file.unlink(missing_ok=True)
        self._video_loc[key] = loc
        return {
            f"videos/{key}/chunk_index": loc[0],
            f"videos/{key}/file_index": loc[1],
            f"videos/{key}/from_timestamp": from_ts,
            f"videos/{key}/to_timestamp": from_ts + ep_dur,
        }

    def _write_episode_row(self, row: dict) -> None:
        if self._meta_loc is None:
            self._meta_loc = (0, 0)
        else:
            path = self._meta_path(self._meta_loc)
            size = _file_mb(path)
            if self._meta_rows and size + size / len(self._meta_rows) >= float(
                self.info["data_files_size_in_mb"]
            ):
                self._meta_loc = layout.next_chunk_file(*self._meta_loc, self.info["chunks_size"])
                self._meta_rows = []
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = self._meta_loc
        self._meta_rows.append(row)
        table = pa.Table.from_pylist(self._meta_rows)
        self._write_parquet([table], self._meta_path(self._meta_loc))

    def _meta_path(self, loc: tuple[int, int]) -> Path:
        return self.root / layout.EPISODES_PATH.format(chunk_index=loc[0], file_index=loc[1])

    # ------------------------------------------------------------------ resume / repair
    def _repair(self) -> None:
        """Bring the folder back to exactly the committed episodes and load the writer state."""
        root, info = self.root, self.info
        layout.remove_stale_tmp_files(root)
        n_eps, n_frames = int(info["total_episodes"]), int(info["total_frames"])
        rows: list[dict] = []
        for f in sorted((root / layout.EPISODES_DIR).glob("chunk-*/file-*.parquet")):
            rows += read_parquet(f).to_pylist()
        rows = sorted((r for r in rows if r["episode_index"] < n_eps), key=lambda r: r["episode_index"])
        if [r["episode_index"] for r in rows] != list(range(n_eps)):
            raise ValueError(
                f"{root}: meta/info.json counts {n_eps} episodes but meta/episodes holds "
                f"{[r['episode_index'] for r in rows][:10]}...; cannot resume; {repair_hint(root)}"
            )
        if rows and rows[-1]["dataset_to_index"] != n_frames:
            raise ValueError(
                f"{root}: meta/info.json total_frames={n_frames} but the last episode ends at "
                f"{rows[-1]['dataset_to_index']}; {repair_hint(root)}"
            )
        self._rows = rows
        n_tasks = int(info.get("total_tasks", 0))
        if n_tasks:
            t = read_parquet(root / layout.TASKS_PATH)
            text_col = (
                "task" if "task" in t.column_names else [c for c in t.column_names if c != "task_index"][0]
            )
            by_idx = dict(zip(t.column("task_index").to_pylist(), t.column(text_col).to_pylist()))
            self.tasks = [by_idx[i] for i in range(n_tasks)]
            if len(by_idx) != n_tasks or "task" not in t.column_names:
                write_tasks(self.tasks, root / layout.TASKS_PATH)
        if not rows:
            for sub in ("data", "videos", layout.EPISODES_DIR):
                shutil.rmtree(root / sub, ignore_errors=True)
            (root / layout.STATS_PATH).unlink(missing_ok=True)
            return

        last = rows[-1]
        # Data: keep only committed rows in the last file; drop files written after it.
        self._data_loc = (last["data/chunk_index"], last["data/file_index"])
        path = self._data_path(self._data_loc)
        table = read_parquet(path)
        keep = pc.less(table.column("index"), pa.scalar(n_frames, pa.int64()))
        if not pc.all(keep).as_py():
            table = table.filter(keep)
            self._write_parquet([table.cast(self._schema)], path)
        self._data_tables = [table.cast(self._schema)]
        self._remove_files_after(root / "data", self._data_loc, ".parquet")
        # Videos: cut each camera's last file back to the last committed timestamp.
        for key in self._video_keys:
            loc = (last[f"videos/{key}/chunk_index"], last[f"videos/{key}/file_index"])
            self._video_loc[key] = loc
            vpath = self._video_path(key, loc)
            end = float(last[f"videos/{key}/to_timestamp"])
            if video_duration_s(vpath) > end + 0.5 / float(self.fps):
                with layout.atomic_write(vpath) as tmp:
                    remux([(vpath, end)], tmp)
            self._remove_files_after(root / "videos" / key, loc, ".mp4")
        # Episode metadata: the last file holds exactly the committed rows.
        self._meta_loc = (last["meta/episodes/chunk_index"], last["meta/episodes/file_index"])
        self._meta_rows = [
            r
            for r in rows
            if (r["meta/episodes/chunk_index"], r["meta/episodes/file_index"]) == self._meta_loc
        ]
        meta_path = self._meta_path(self._meta_loc)
        if read_parquet(meta_path).num_rows != len(self._meta_rows):
            self._write_parquet([pa.Table.from_pylist(self._meta_rows)], meta_path)
        self._remove_files_after(root / layout.EPISODES_DIR, self._meta_loc, ".parquet")
        self._stats = aggregate_stats([_stats_from_row(r, self.features) for r in rows])
        layout.write_json(self._stats, root / layout.STATS_PATH)

    @staticmethod
    def _remove_files_after(folder: Path, loc: tuple[int, int], ext: str) -> None:
        for f in folder.glob(f"chunk-*/file-*{ext}"):
            c, i = int(f.parent.name.split("-")[1]), int(f.stem.split("-")[1])
            if (c, i) > tuple(loc):
                f.unlink()

    # ------------------------------------------------------------------ closing
    def finalize(self) -> None:
        """Release the dataset (every saved episode is already on disk); unsaved frames are dropped.
        Idempotent."""
        if self._finalized:
            return
        self._clear_buffer()
        layout.remove_stale_tmp_files(self.root)
        self._release_lock()
        self._finalized = True

    def __enter__(self) -> "LeRobotDatasetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.finalize()

    def __del__(self) -> None:
        try:
            self._release_lock()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"LeRobotDatasetWriter({str(self.root)!r}, episodes={self.num_episodes}, frames={self.num_frames})"


def features_from_arrays(example: dict[str, np.ndarray], camera_keys: Sequence[str] = ()) -> dict[str, dict]:
    """Build a ``features`` dict from one example frame: cameras (uint8 (H, W, 3)) become video
    features, everything else numeric vectors of its dtype."""
    feats = {}
    for key, v in example.items():
        v = np.asarray(v)
        if key in camera_keys or (v.ndim == 3 and v.dtype == np.uint8 and v.shape[-1] == 3):
            feats[key] = {"dtype": "video", "shape": list(v.shape), "names": ["height", "width", "channels"]}
        else:
            feats[key] = {"dtype": str(v.dtype), "shape": list(v.shape) or [1], "names": None}
    return feats
