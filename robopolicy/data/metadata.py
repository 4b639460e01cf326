"""Dataset metadata (``meta/``) of a LeRobotDataset, v3.0 or v2.x, behind one interface.

v3.0: info.json, stats.json, tasks.parquet, meta/episodes/chunk-*/file-*.parquet (one row per episode
with its data file, frame range and, per camera, video file and [from, to) timestamps).
v2.x: info.json, episodes.jsonl, tasks.jsonl, episodes_stats.jsonl (v2.1) or stats.json (v2.0); one
data parquet and one mp4 per camera per episode. Loading checks the pieces agree with each other
and raises errors that name the file and what is wrong.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robopolicy.data import layout
from robopolicy.data.stats import Stats, aggregate_stats, stats_from_json


def repair_hint(root: Path) -> str:
    """How to repair a dataset whose data, video or episode-metadata files are damaged: the command
    that recorded it (robopolicy-record repairs and re-records), else the repair module."""
    from robopolicy.data.record import record_command

    try:
        version = layout.read_json(root / layout.INFO_PATH).get("codebase_version")
    except (ValueError, OSError, AttributeError):
        version = None
    if version in layout.READABLE_VERSIONS and version != layout.CODEBASE_VERSION:
        return (
            f"restore the damaged file from the dataset's source (only {layout.CODEBASE_VERSION} datasets "
            f"can be repaired here)"
        )
    cmd = record_command(root)
    if cmd:
        return (
            f"repair it with the command that recorded it: {cmd} (it rebuilds the metadata from the data "
            f"files and re-records the episodes whose files are lost)"
        )
    return (
        f"repair it with: python -m robopolicy.data.repair {shlex.quote(str(root))} (it rebuilds the "
        f"metadata from the data files and drops, and lists, the episodes whose data or video files are lost)"
    )


def rerecord_hint(root: Path) -> str:
    """What to do when meta/info.json itself is damaged: the other files cannot say what it held."""
    from robopolicy.data.record import record_command

    cmd = record_command(root)
    q = shlex.quote(str(root))
    if cmd:
        return f"it cannot be rebuilt from the other files: record the dataset again with: mv {q} {q}.damaged && {cmd}"
    return "it cannot be rebuilt from the other files: restore it from the dataset's source"


def _dataset_root(path: Path) -> Path | None:
    """The dataset folder a file under data/, videos/ or meta/ belongs to."""
    for p in path.parents:
        if (p / "meta").is_dir():
            return p
    return None


def _with_hint(path: Path, msg: str) -> str:
    root = _dataset_root(path)
    return f"{msg}; {repair_hint(root)}" if root is not None else msg


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """pq.read_table with errors naming the file: missing -> FileNotFoundError, corrupt -> ValueError
    (both say how to repair the dataset the file belongs to)."""
    if not path.is_file():
        raise FileNotFoundError(_with_hint(path, f"{path}: parquet file not found"))
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
        raise ValueError(_with_hint(path, f"{path}: corrupt or unreadable parquet ({e})")) from e


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# info.json keys the reader needs, and the type each one (and each optional key, when present) must have.
INFO_REQUIRED = ("codebase_version", "fps", "features", "data_path", "total_episodes", "total_frames")
_INFO_TYPES = {
    "codebase_version": (lambda v: isinstance(v, str), "a string"),
    "fps": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "features": (lambda v: isinstance(v, dict) and bool(v), "a non-empty mapping"),
    "data_path": (lambda v: isinstance(v, str) and bool(v), "a path template string"),
    "video_path": (lambda v: v is None or isinstance(v, str), "a path template string or null"),
    "total_episodes": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "total_frames": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "total_tasks": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "chunks_size": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "data_files_size_in_mb": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "video_files_size_in_mb": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "splits": (lambda v: isinstance(v, dict), "a mapping"),
}


def info_problems(info: Any) -> list[str]:
    """What is wrong with a parsed info.json (empty when nothing): not an object, missing keys,
    wrong types."""
    if not isinstance(info, dict):
        return [f"must be a JSON object, got {type(info).__name__}"]
    out = []
    missing = [k for k in INFO_REQUIRED if k not in info]
    if missing:
        out.append(f"missing required keys {missing}")
    wrong = [
        f"{k} must be {what} (got {info[k]!r:.60})"
        for k, (ok, what) in _INFO_TYPES.items()
        if k in info and not ok(info[k])
    ]
    if wrong:
        out.append("wrong types: " + ", ".join(wrong))
    return out


def read_info(root: str | Path) -> dict[str, Any]:
    """meta/info.json of the dataset at ``root``, checked: an error names the file and says what is
    wrong (missing, not UTF-8, not JSON at line:col, missing keys, wrong types, unknown version)."""
    root = Path(root)
    where = root / layout.INFO_PATH
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found" + _interrupted_repair_note(root))
    try:
        info = layout.read_json(where)
    except FileNotFoundError:
        raise
    except ValueError as e:
        raise ValueError(f"{e}; {rerecord_hint(root)}") from e
    problems = info_problems(info)
    if problems:
        raise ValueError(f"{where}: {'; '.join(problems)}; {rerecord_hint(root)}")
    version = info["codebase_version"]
    if version not in layout.READABLE_VERSIONS:
        raise ValueError(
            f"{where}: codebase_version {version!r} is not supported (readable: {', '.join(layout.READABLE_VERSIONS)})"
        )
    _check_features(info["features"], where)
    return info


def _interrupted_repair_note(root: Path) -> str:
    from robopolicy.data.repair import staging_folder

    if staging_folder(root).is_dir():
        return (
            f" (a repair was interrupted while swapping in {staging_folder(root)}: run the repair or record "
            f"command again to finish it)"
        )
    return ""


def read_stats_json(path: Path) -> dict[str, Stats]:
    """meta/stats.json as arrays, checked: feature -> stat -> numbers."""
    d = layout.read_json(path)
    if not isinstance(d, dict) or not all(isinstance(v, dict) for v in d.values()):
        raise ValueError(f"{path}: must map feature -> stat -> values, got {str(d)[:60]!r}")
    stats = stats_from_json(d) if _numeric_stats(d) else None
    if stats is None:
        raise ValueError(f"{path}: holds non-numeric or ragged statistics")
    return stats


def _numeric_stats(d: dict) -> bool:
    try:
        return all(np.asarray(v).dtype.kind in "biuf" for ft in d.values() for v in ft.values())
    except ValueError:  # ragged nested lists
        return False


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
        info = read_info(root)
        version = info["codebase_version"]
        if version == "v3.0":
            tasks = _load_tasks_v3(root) if int(info.get("total_tasks", 1)) or info["total_episodes"] else []
            episodes, ep_stats = _load_episodes_v3(root, info)
            stats_path = root / layout.STATS_PATH
            if stats_path.is_file():
                try:
                    stats = read_stats_json(stats_path)
                except ValueError as e:
                    raise ValueError(f"{e}; {repair_hint(root)}") from e
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
                stats = read_stats_json(root / layout.STATS_PATH)
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
                f"(extra episode(s) {extra[:5]}): half-written episode; {repair_hint(self.root)}"
            )
        if sorted(idx) != list(range(n)):
            missing = sorted(set(range(n)) - set(idx))
            raise ValueError(
                f"{where}: total_episodes={n} but the episode metadata lists episodes {idx[:10]}... "
                f"(missing {missing[:10]}); {repair_hint(self.root)}"
            )
        if self.version == "v3.0":
            # lerobot loads every parquet under data/: a file no episode points to is the leftover
            # of an interrupted save and would be read as extra frames.
            used = {self.data_file(e) for e in self.episodes}
            for f in sorted((self.root / "data").glob("chunk-*/*.parquet")):
                if f not in used:
                    raise ValueError(
                        f"{f}: data file not referenced by any episode in meta/episodes: half-written episode; "
                        f"{repair_hint(self.root)}"
                    )
        total = sum(int(e["length"]) for e in self.episodes)
        if total != int(self.info["total_frames"]):
            raise ValueError(
                f"{where}: total_frames={self.info['total_frames']} but episode lengths sum to {total}; "
                f"{repair_hint(self.root)}"
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
        raise FileNotFoundError(
            f"{root / layout.EPISODES_DIR}: no episode metadata parquet files; {repair_hint(root)}"
        )
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
