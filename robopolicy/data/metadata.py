"""Dataset metadata (``meta/``) of a LeRobotDataset, v3.0 or v2.x, behind one interface.

v3.0: info.json, stats.json, tasks.parquet, meta/episodes/chunk-*/file-*.parquet (one row per episode
with its data file, frame range and, per camera, video file and [from, to) timestamps).
v2.x: info.json, episodes.jsonl, tasks.jsonl, episodes_stats.jsonl (v2.1) or stats.json (v2.0); one
data parquet and one mp4 per camera per episode. Loading checks the pieces agree with each other
and raises errors that name the file and what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robopolicy.data import layout
from robopolicy.data.stats import Stats, aggregate_stats, stats_from_json

_INTERRUPTED_HINT = (
    "a recording was probably killed while saving an episode; reopen it with "
    "LeRobotDatasetWriter.resume(root) (or re-run robopolicy-record with the same output) to repair it"
)


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """pq.read_table with errors naming the file: missing -> FileNotFoundError, corrupt -> ValueError."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: parquet file not found")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
        raise ValueError(f"{path}: corrupt or unreadable parquet ({e}); {_INTERRUPTED_HINT}") from e


@dataclass
class DatasetMeta:
    """Everything in ``meta/``: ``info`` (info.json), ``stats`` (feature -> stat -> array),
    ``tasks`` (task strings by task_index) and ``episodes`` (one dict per episode, v3.0 keys)."""

    root: Path
    info: dict[str, Any]
    stats: dict[str, Stats] | None
    tasks: list[str]
    episodes: list[dict[str, Any]]

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, root: str | Path) -> "DatasetMeta":
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: dataset folder not found")
        info = layout.read_json(root / layout.INFO_PATH)
        where = root / layout.INFO_PATH
        version = info.get("codebase_version")
        if version not in layout.READABLE_VERSIONS:
            raise ValueError(
                f"{where}: codebase_version {version!r} is not supported (readable: {', '.join(layout.READABLE_VERSIONS)})"
            )
        for key in ("fps", "features", "data_path", "total_episodes", "total_frames"):
            if key not in info:
                raise ValueError(f"{where}: missing key {key!r}")
        _check_features(info["features"], where)
        if version == "v3.0":
            tasks = _load_tasks_v3(root) if int(info.get("total_tasks", 1)) or info["total_episodes"] else []
            episodes, ep_stats = _load_episodes_v3(root, info)
            stats_path = root / layout.STATS_PATH
            if stats_path.is_file():
                stats = stats_from_json(layout.read_json(stats_path))
            else:
                stats = aggregate_stats(ep_stats) if ep_stats else None
        else:
            tasks = _load_tasks_v2(root)
            episodes = _load_episodes_v2(root, info)
            legacy_stats = root / layout.LEGACY_EPISODES_STATS_PATH
            if legacy_stats.is_file():
                rows = layout.read_jsonl(legacy_stats)
                stats = aggregate_stats([stats_from_json(r["stats"]) for r in rows]) if rows else None
            elif (root / layout.STATS_PATH).is_file():
                stats = stats_from_json(layout.read_json(root / layout.STATS_PATH))
            else:
                stats = None
        meta = cls(root=root, info=info, stats=stats, tasks=tasks, episodes=episodes)
        meta._check_consistency()
        return meta

    def _check_consistency(self) -> None:
        where = self.root / layout.INFO_PATH
        n = int(self.info["total_episodes"])
        idx = [int(e["episode_index"]) for e in self.episodes]
        if len(idx) > n:
            extra = sorted(set(idx) - set(range(n)))
            raise ValueError(
                f"{self.root / layout.EPISODES_DIR}: lists {len(idx)} episodes but {where} has total_episodes={n} "
                f"(extra episode(s) {extra[:5]}): half-written episode; {_INTERRUPTED_HINT}"
            )
        if sorted(idx) != list(range(n)):
            missing = sorted(set(range(n)) - set(idx))
            raise ValueError(
                f"{where}: total_episodes={n} but the episode metadata lists episodes {idx[:10]}... "
                f"(missing {missing[:10]})"
            )
        if self.version == "v3.0":
            # lerobot loads every parquet under data/: a file no episode points to is the leftover
            # of an interrupted save and would be read as extra frames.
            used = {self.data_file(e) for e in self.episodes}
            for f in sorted((self.root / "data").glob("chunk-*/*.parquet")):
                if f not in used:
                    raise ValueError(
                        f"{f}: data file not referenced by any episode in meta/episodes: half-written episode; "
                        f"{_INTERRUPTED_HINT}"
                    )
        total = sum(int(e["length"]) for e in self.episodes)
        if total != int(self.info["total_frames"]):
            raise ValueError(
                f"{where}: total_frames={self.info['total_frames']} but episode lengths sum to {total}"
            )
        for e in self.episodes:
            for t in e.get("tasks") or []:
                if t not in self.tasks:
                    raise ValueError(
                        f"{self.root}: episode {e['episode_index']} has task {t!r} missing from the task table"
                    )

    # ------------------------------------------------------------------ accessors
    @property
    def version(self) -> str:
        return self.info["codebase_version"]

    @property
    def fps(self) -> float:
        return self.info["fps"]

    @property
    def features(self) -> dict[str, dict]:
        return self.info["features"]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "video"]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "image"]

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] in layout.CAMERA_DTYPES]

    @property
    def total_episodes(self) -> int:
        return int(self.info["total_episodes"])

    @property
    def total_frames(self) -> int:
        return int(self.info["total_frames"])

    @property
    def chunks_size(self) -> int:
        return int(self.info.get("chunks_size", layout.DEFAULT_CHUNK_SIZE))

    def data_file(self, ep: dict) -> Path:
        if self.version == "v3.0":
            rel = self.info["data_path"].format(
                chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"]
            )
        else:
            i = int(ep["episode_index"])
            rel = self.info["data_path"].format(episode_chunk=i // self.chunks_size, episode_index=i)
        return self.root / rel

    def video_file(self, ep: dict, key: str) -> Path:
        tpl = self.info.get("video_path")
        if not tpl:
            raise ValueError(
                f"{self.root / layout.INFO_PATH}: feature {key!r} is a video but video_path is null"
            )
        if self.version == "v3.0":
            rel = tpl.format(
                video_key=key,
                chunk_index=ep[f"videos/{key}/chunk_index"],
                file_index=ep[f"videos/{key}/file_index"],
            )
        else:
            i = int(ep["episode_index"])
            rel = tpl.format(episode_chunk=i // self.chunks_size, video_key=key, episode_index=i)
        return self.root / rel

    def video_from_timestamp(self, ep: dict, key: str) -> float:
        return float(ep.get(f"videos/{key}/from_timestamp", 0.0))


def _check_features(features: dict, where: Path) -> None:
    if not isinstance(features, dict) or not features:
        raise ValueError(f"{where}: 'features' must be a non-empty mapping")
    for key, ft in features.items():
        if not isinstance(ft, dict) or "dtype" not in ft or "shape" not in ft:
            raise ValueError(f"{where}: feature {key!r} needs 'dtype' and 'shape'")
        if ft["dtype"] in layout.CAMERA_DTYPES and len(ft["shape"]) != 3:
            raise ValueError(f"{where}: camera feature {key!r} must have a 3-d shape, got {ft['shape']}")
    for key in layout.DEFAULT_FEATURES:
        if key not in features:
            raise ValueError(f"{where}: missing the standard feature {key!r}")


def _load_tasks_v3(root: Path) -> list[str]:
    path = root / layout.TASKS_PATH
    t = read_parquet(path)
    if "task_index" not in t.column_names:
        raise ValueError(f"{path}: no 'task_index' column (columns: {t.column_names})")
    # lerobot stores the task string as the pandas index: named 'task' (0.6) or '__index_level_0__' (0.4).
    text_cols = [
        c
        for c in t.column_names
        if c != "task_index"
        and (pa.types.is_string(t.schema.field(c).type) or pa.types.is_large_string(t.schema.field(c).type))
    ]
    if not text_cols:
        raise ValueError(f"{path}: no task string column (columns: {t.column_names})")
    col = "task" if "task" in text_cols else text_cols[0]
    idx = t.column("task_index").to_pylist()
    text = t.column(col).to_pylist()
    if sorted(idx) != list(range(len(idx))):
        raise ValueError(f"{path}: task_index values {sorted(idx)[:10]} are not 0..{len(idx) - 1}")
    tasks = [""] * len(idx)
    for i, s in zip(idx, text):
        tasks[i] = s
    return tasks


def _load_episodes_v3(root: Path, info: dict) -> tuple[list[dict], list[dict[str, Stats]]]:
    files = sorted((root / layout.EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    if not files:
        if int(info["total_episodes"]) == 0:
            return [], []
        raise FileNotFoundError(f"{root / layout.EPISODES_DIR}: no episode metadata parquet files")
    episodes: list[dict] = []
    ep_stats: list[dict[str, Stats]] = []
    required = [
        "episode_index",
        "length",
        "data/chunk_index",
        "data/file_index",
        "dataset_from_index",
        "dataset_to_index",
    ]
    for f in files:
        t = read_parquet(f)
        for c in required:
            if c not in t.column_names:
                raise ValueError(f"{f}: missing column {c!r}")
        plain = [c for c in t.column_names if not c.startswith("stats/")]
        stat_cols = [c for c in t.column_names if c.startswith("stats/")]
        rows = t.select(plain).to_pylist()
        stat_data = {c: t.column(c).to_pylist() for c in stat_cols}
        for r, row in enumerate(rows):
            episodes.append(row)
            s: dict[str, Stats] = {}
            for c in stat_cols:
                feat, stat = c[len("stats/") :].rsplit("/", 1)
                if stat_data[c][r] is not None:
                    s.setdefault(feat, {})[stat] = np.asarray(stat_data[c][r])
            ep_stats.append(s)
    order = np.argsort([e["episode_index"] for e in episodes], kind="stable")
    return [episodes[i] for i in order], [ep_stats[i] for i in order]


def _load_tasks_v2(root: Path) -> list[str]:
    path = root / layout.LEGACY_TASKS_PATH
    rows = layout.read_jsonl(path)
    tasks = [""] * len(rows)
    for r in rows:
        i = int(r["task_index"])
        if not 0 <= i < len(rows):
            raise ValueError(f"{path}: task_index {i} out of range 0..{len(rows) - 1}")
        tasks[i] = r["task"]
    return tasks


def _load_episodes_v2(root: Path, info: dict) -> list[dict]:
    path = root / layout.LEGACY_EPISODES_PATH
    rows = sorted(layout.read_jsonl(path), key=lambda r: r["episode_index"])
    start = 0
    episodes = []
    video_keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    for r in rows:
        n = int(r["length"])
        ep = {
            "episode_index": int(r["episode_index"]),
            "tasks": list(r.get("tasks", [])),
            "length": n,
            "dataset_from_index": start,
            "dataset_to_index": start + n,
        }
        for k in video_keys:
            ep[f"videos/{k}/from_timestamp"] = 0.0
            ep[f"videos/{k}/to_timestamp"] = n / info["fps"]
        episodes.append(ep)
        start += n
    return episodes
