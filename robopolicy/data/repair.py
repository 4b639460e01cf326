"""Repair a LeRobotDataset v3.0 whose files were damaged (deleted, cut short, overwritten).

``plan_repair(root)`` reads everything and decides, changing nothing:

- episode metadata (``meta/episodes/*.parquet``) that is lost is rebuilt from the data files:
  length and frame range from the rows, tasks from ``task_index``, stats recomputed, and each
  camera's place in its video file found by walking the files in episode order (episodes are
  stored end to end); ``tasks.parquet`` and ``stats.json`` are rebuilt the same way;
- an episode whose data file or video file is missing or cut short is dropped: a data file
  (``data/chunk-*/file-*.parquet``) holds several episodes, and so does each mp4, so one damaged
  file takes all the episodes it held (a video cut short keeps the episodes that end before the
  cut). The later episodes are renumbered so indices stay 0..N-1, as the format requires.

``apply_repair(plan)`` writes the repaired dataset beside the old one (``.<name>.repairing``;
untouched files are hard links, so it costs little space), then swaps the folders with two renames
and deletes the old one; a repair killed half way leaves the old folder as it was, or a complete
new one that ``finish_interrupted_repair`` moves into place. Episode frames are never changed:
files are rewritten only to drop rows and renumber ``episode_index`` / ``index``.

``robopolicy-record`` with the same output runs this and re-records the dropped episodes; for
other datasets: ``python -m robopolicy.data.repair <root>`` (drops them, and lists them).
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from robopolicy.data import layout
from robopolicy.data.columns import column_to_numpy
from robopolicy.data.images import decode_image
from robopolicy.data.metadata import _load_tasks_v3, read_info, read_parquet, read_stats_json
from robopolicy.data.stats import aggregate_stats, vector_stats
from robopolicy.data.video import _rate, decode_at, mp4_truncated, readable_until_s, remux, video_duration_s
from robopolicy.data.writer import (
    _LOCK_NAME,
    _stats_from_row,
    data_schema,
    episode_stats,
    lock_dataset,
    stats_columns,
    unlock_dataset,
    write_parquet,
    write_tasks,
)

_REQUIRED_ROW = (
    "episode_index", "length", "data/chunk_index", "data/file_index", "dataset_from_index", "dataset_to_index"
)
_VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
_TOLERANCE_S = 1e-4
# What apply_repair rebuilds itself; everything else in the folder is carried over as it is.
_REBUILT = ("data", "videos", layout.EPISODES_DIR, layout.INFO_PATH, layout.STATS_PATH, layout.TASKS_PATH)


def staging_folder(root: Path) -> Path:
    """Where ``apply_repair`` builds the repaired dataset before swapping it in."""
    root = Path(root)
    return root.parent / f".{root.name}.repairing"


def _old_folder(root: Path) -> Path:
    return root.parent / f".{root.name}.damaged"


def finish_interrupted_repair(root: str | Path) -> bool:
    """Complete a repair killed during its folder swap; True if one was completed."""
    root = Path(root)
    stage, old = staging_folder(root), _old_folder(root)
    done = False
    if not root.exists() and (stage / layout.INFO_PATH).is_file():
        os.rename(stage, root)  # the old folder was already moved aside
        done = True
    if root.exists():
        for leftover in (stage, old):  # an unfinished stage (the old folder is intact), or the old one
            if leftover.exists():
                shutil.rmtree(leftover)
    return done


@dataclass
class RepairPlan:
    """What ``plan_repair`` found and what ``apply_repair`` will do."""

    root: Path
    """Dataset folder."""
    info: dict[str, Any]
    """Its meta/info.json."""
    problems: list[str] = field(default_factory=list)
    """Damage found, one line per file ("<path>: <what is wrong>"); empty when the dataset is intact."""
    rows: dict[int, dict] = field(default_factory=dict)
    """Episode metadata row of every kept episode, by its current index (intact or rebuilt)."""
    rebuilt: list[int] = field(default_factory=list)
    """Episodes whose metadata row was rebuilt from the data files."""
    dropped: dict[int, str] = field(default_factory=dict)
    """Episodes that cannot be kept, by current index, with the reason."""
    tasks: list[str] = field(default_factory=list)
    """The task table (rebuilt if tasks.parquet was damaged)."""
    tasks_rebuilt: bool = False
    """Whether tasks.parquet must be rewritten."""
    video_cuts: dict[Path, float] = field(default_factory=dict)
    """Cut-short videos still holding kept episodes: rewritten cleanly up to this time (s)."""

    @property
    def needed(self) -> bool:
        return bool(self.problems)

    @property
    def kept(self) -> list[int]:
        """Current indices of the episodes kept, in order (their new index is their position)."""
        return sorted(self.rows)

    def describe(self) -> str:
        lines = [f"{self.root}: damaged dataset:"] + [f"  {p}" for p in self.problems]
        if self.rebuilt:
            lines.append(f"  rebuilding the metadata of {len(self.rebuilt)} episode(s) from the data files")
        for e, why in sorted(self.dropped.items()):
            lines.append(f"  dropping episode {e}: {why}")
        lines.append(
            f"  keeping {len(self.rows)} of {self.info['total_episodes']} episodes"
            + (" (the later ones renumbered: indices stay 0..N-1)" if self.dropped else "")
        )
        return "\n".join(lines)


def _data_loc(row: dict) -> tuple[int, int]:
    return int(row["data/chunk_index"]), int(row["data/file_index"])


def _loc_of(path: Path) -> tuple[int, int]:
    return int(path.parent.name.split("-")[1]), int(path.stem.split("-")[1])


def _reason(err: Exception) -> str:
    """The part of a reader error after the file name, without its repair hint."""
    msg = str(err).split("; repair it with", 1)[0]
    return msg.split(": ", 1)[1] if ": " in msg else msg


def plan_repair(root: str | Path) -> RepairPlan:
    """Inspect the dataset at ``root`` (nothing is written); see the module docstring."""
    root = Path(root)
    info = read_info(root)
    if info["codebase_version"] != layout.CODEBASE_VERSION:
        raise ValueError(
            f"{root}: only {layout.CODEBASE_VERSION} datasets can be repaired, this one is {info['codebase_version']}"
        )
    plan = RepairPlan(root=root, info=info)
    n = int(info["total_episodes"])
    meta_rows = _surviving_rows(plan)
    tasks = _surviving_tasks(plan)
    stats_path = root / layout.STATS_PATH
    if stats_path.is_file():  # optional in the format (the reader aggregates the episode stats)
        try:
            read_stats_json(stats_path)
        except ValueError as e:
            plan.problems.append(f"{stats_path}: {_reason(e)}")
    found = _scan_data_files(plan, meta_rows)
    if tasks is None:
        tasks = _rebuild_tasks(meta_rows, found, plan)
        plan.tasks_rebuilt = True
    plan.tasks = tasks
    placed = _place_videos(plan, meta_rows, found)
    frames = sum(int(r["length"]) for r in meta_rows.values())
    if len(meta_rows) == n and frames != int(info["total_frames"]):
        plan.problems.append(
            f"{root / layout.INFO_PATH}: total_frames={info['total_frames']} but the episodes hold {frames}"
        )
    # Rows of the kept episodes: intact ones as they are, lost ones rebuilt from the data (and videos).
    for e in range(n):
        if e in plan.dropped:
            continue
        if e in meta_rows:
            plan.rows[e] = meta_rows[e]
            continue
        try:
            plan.rows[e] = _rebuild_row(e, found[e], placed[e], info, tasks, root)
            plan.rebuilt.append(e)
        except (ValueError, FileNotFoundError) as err:
            plan.dropped[e] = f"its metadata cannot be rebuilt ({err})"
    return plan


def _video_keys(info: dict) -> list[str]:
    return [k for k, f in info["features"].items() if f["dtype"] == "video"]


def _surviving_rows(plan: RepairPlan) -> dict[int, dict]:
    """The readable meta/episodes rows of committed episodes (rows past total_episodes are an
    uncommitted save, which the writer's resume discards: not damage)."""
    root, n = plan.root, int(plan.info["total_episodes"])
    required = list(_REQUIRED_ROW) + [f"videos/{k}/{c}" for k in _video_keys(plan.info) for c in _VIDEO_COLUMNS]
    rows: dict[int, dict] = {}
    damaged = False
    for f in sorted((root / layout.EPISODES_DIR).glob("chunk-*/file-*.parquet")):
        try:
            t = read_parquet(f)
            missing = [c for c in required if c not in t.column_names]
            if missing:
                raise ValueError(f"{f}: missing column(s) {missing}")
        except (ValueError, FileNotFoundError) as e:
            plan.problems.append(f"{f}: {_reason(e)}")
            damaged = True
            continue
        for r in t.to_pylist():
            if r["episode_index"] < n:
                rows.setdefault(int(r["episode_index"]), r)
    lost = [e for e in range(n) if e not in rows]
    if lost and not damaged:
        plan.problems.append(f"{root / layout.EPISODES_DIR}: no metadata for episode(s) {_short(lost)}")
    return rows


def _surviving_tasks(plan: RepairPlan) -> list[str] | None:
    """The task table, or None if tasks.parquet is damaged (then rebuilt from the episode rows)."""
    if not int(plan.info.get("total_tasks", 0)) and not int(plan.info["total_episodes"]):
        return []
    try:
        return _load_tasks_v3(plan.root)
    except (ValueError, FileNotFoundError) as e:
        plan.problems.append(f"{plan.root / layout.TASKS_PATH}: {_reason(e)}")
        return None


def _scan_data_files(plan: RepairPlan, meta_rows: dict[int, dict]) -> dict[int, dict]:
    """Read every data file: where each committed episode's rows are (and, for an episode whose
    metadata row is lost, the rows themselves); episodes whose rows are lost go to ``plan.dropped``."""
    root, info, n = plan.root, plan.info, int(plan.info["total_episodes"])
    paths = {_data_path(root, info, _data_loc(r)) for r in meta_rows.values()}
    paths |= set((root / "data").glob("chunk-*/file-*.parquet"))
    names = sorted(data_schema(info["features"]).names)
    found: dict[int, dict] = {}
    damaged: dict[Path, str] = {}
    for path in sorted(paths):
        try:
            table = read_parquet(path)
            if sorted(c for c in table.column_names if not c.startswith("__index_level")) != names:
                raise ValueError(f"{path}: columns {table.column_names} are not the features' {names}")
        except (ValueError, FileNotFoundError) as e:
            damaged[path] = "missing" if isinstance(e, FileNotFoundError) else _reason(e)
            plan.problems.append(f"{path}: {damaged[path]}")
            continue
        ep_col = table.column("episode_index").to_numpy()
        committed = np.unique(ep_col[ep_col < n]).tolist()
        elsewhere = [e for e in committed if e in meta_rows and _data_loc(meta_rows[e]) != _loc_of(path)]
        if elsewhere:  # e.g. a stray copy: its rows are not the ones the metadata points to
            plan.problems.append(f"{path}: data file not referenced by episode(s) {_short(elsewhere)} it holds")
        for e in committed:
            if e in elsewhere:
                continue
            sel = np.flatnonzero(ep_col == e)
            part = table.take(pa.array(sel))
            fi = part.column("frame_index").to_numpy()
            ix = part.column("index").to_numpy()
            row = meta_rows.get(e)
            ok = np.array_equal(fi, np.arange(len(sel))) and np.array_equal(ix, ix[0] + np.arange(len(sel)))
            if row is not None:
                ok = ok and len(sel) == row["length"] and int(ix[0]) == row["dataset_from_index"]
            if not ok:
                plan.dropped[e] = f"its rows in {path.relative_to(root)} do not form a whole episode"
                plan.problems.append(f"{path}: episode {e}'s rows are incomplete or out of order")
                continue
            found[e] = {
                "path": path,
                "length": len(sel),
                "from": int(ix[0]),
                "task_idx": list(dict.fromkeys(part.column("task_index").to_numpy().tolist())),
                "table": part if row is None else None,  # kept only to rebuild a lost row
            }
    for e in range(n):
        if e in found or e in plan.dropped:
            continue
        if e in meta_rows:
            p = _data_path(root, info, _data_loc(meta_rows[e]))
            rel = p.relative_to(root)
            if p in damaged:
                plan.dropped[e] = f"its data file {rel} is {'missing' if damaged[p] == 'missing' else 'damaged'}"
            else:
                plan.dropped[e] = f"its data file {rel} holds none of its rows"
        else:
            plan.dropped[e] = "its rows are in a missing or unreadable data file, and its metadata is lost too"
    return found


def _place_videos(plan: RepairPlan, meta_rows: dict[int, dict], found: dict[int, dict]) -> dict[int, dict]:
    """Per episode and camera, its video file and [from, to) timestamps: from its metadata row, or
    for a lost row by walking the camera's files in episode order (episodes end to end, a new file
    once one is full). Episodes whose frames are missing or past a cut go to ``plan.dropped``;
    cut-short files still holding kept episodes go to ``plan.video_cuts``."""
    root, info, n = plan.root, plan.info, int(plan.info["total_episodes"])
    rate = _rate(float(info["fps"]))
    durations: dict[Path, float] = {}

    def duration(path: Path) -> float:
        if path not in durations:
            durations[path] = _duration(path)
        return durations[path]

    placed: dict[int, dict] = {e: {} for e in range(n)}
    readable: dict[Path, float] = {}
    for key in _video_keys(info):
        cols = [f"videos/{key}/{c}" for c in _VIDEO_COLUMNS]
        cursor: tuple[tuple[int, int], int] | None = ((0, 0), 0)  # (file, frames before the next episode)
        for e in range(n):
            row = meta_rows.get(e)
            if row is not None:
                placed[e][key] = {c: row[c] for c in cols}
                cursor = ((row[cols[0]], row[cols[1]]), round(row[cols[3]] * rate))
                continue
            length = found.get(e, {}).get("length")
            if length is None or cursor is None:  # an episode of unknown length: later ones cannot be placed
                cursor = None
                why = "an earlier episode is lost"
                plan.dropped.setdefault(e, f"its place in videos/{key} cannot be recovered ({why})")
                continue
            loc, start = cursor
            path = _video_path(root, info, key, loc)
            if start and start + length > round(duration(path) * rate):
                loc, start = layout.next_chunk_file(*loc, int(info.get("chunks_size", layout.DEFAULT_CHUNK_SIZE))), 0
                path = _video_path(root, info, key, loc)
            if duration(path) == 0.0:  # missing or unreadable: how many episodes it held is unknown
                cursor = None
                why = _short_status(path)
                plan.dropped.setdefault(e, f"its frames in {path.relative_to(root)} are lost (the file is {why})")
                continue
            from_ts = float(Fraction(start) / rate)
            placed[e][key] = dict(zip(cols, (loc[0], loc[1], from_ts, from_ts + float(Fraction(length) / rate))))
            cursor = (loc, start + length)
        for e in range(n):
            if e in plan.dropped or key not in placed[e]:
                continue
            v = placed[e][key]
            path = _video_path(root, info, key, (v[cols[0]], v[cols[1]]))
            if path not in readable:
                readable[path] = readable_until_s(path)
                status = _video_status(path)
                if status:
                    plan.problems.append(f"{path}: {status}")
            if v[cols[3]] > readable[path] + _TOLERANCE_S:
                why = _short_status(path) if readable[path] == 0 else f"cut short: intact up to {readable[path]:.2f} s"
                plan.dropped[e] = f"its frames in {path.relative_to(root)} are lost (the file is {why})"
            elif mp4_truncated(path):
                plan.video_cuts[path] = max(plan.video_cuts.get(path, 0.0), v[cols[3]])
    return placed


def _short(xs: list[int]) -> str:
    return str(xs) if len(xs) <= 12 else f"{xs[:10]}... ({len(xs)} in all)"


def _data_path(root: Path, info: dict, loc: tuple[int, int]) -> Path:
    return root / info["data_path"].format(chunk_index=loc[0], file_index=loc[1])


def _video_path(root: Path, info: dict, key: str, loc: tuple[int, int]) -> Path:
    return root / info["video_path"].format(video_key=key, chunk_index=loc[0], file_index=loc[1])


def _duration(path: Path) -> float:
    try:
        return video_duration_s(path)
    except (FileNotFoundError, ValueError):
        return 0.0


def _video_status(path: Path) -> str | None:
    """What is wrong with a video file, or None."""
    if not path.is_file():
        return "missing"
    try:
        video_duration_s(path)
    except ValueError as e:
        return _reason(e)
    cut = mp4_truncated(path)
    return f"cut short ({cut})" if cut else None


def _short_status(path: Path) -> str:
    status = _video_status(path)
    return "missing" if status == "missing" else "damaged" if status else "shorter than its metadata says"


def _rebuild_tasks(meta_rows: dict, found: dict, plan: RepairPlan) -> list[str]:
    """The task table from the intact episode rows: an episode's task strings, in order of first
    appearance, belong to the task_index values of its frames in the same order."""
    by_index: dict[int, str] = {}
    for e, row in meta_rows.items():
        if e in found and len(found[e]["task_idx"]) == len(row.get("tasks") or []):
            by_index.update(zip(found[e]["task_idx"], row["tasks"]))
    used = {i for f in found.values() for i in f["task_idx"]}
    unknown = sorted((used | set(range(max(used | set(by_index), default=-1) + 1))) - set(by_index))
    if unknown:
        from robopolicy.data.metadata import rerecord_hint

        raise ValueError(
            f"{plan.root / layout.TASKS_PATH}: damaged, and no intact episode row names the task(s) with "
            f"task_index {unknown}; {rerecord_hint(plan.root)}"
        )
    return [by_index[i] for i in range(len(by_index))]


def _rebuild_row(e: int, f: dict, videos: dict, info: dict, tasks: list[str], root: Path) -> dict:
    """The meta/episodes row of episode ``e`` from its data rows (and video frames), as the writer makes it."""
    features, fps = info["features"], float(info["fps"])
    table: pa.Table = f["table"]
    cols: dict[str, np.ndarray] = {}
    for key, ft in features.items():
        if ft["dtype"] == "image":
            col = table.column(key).combine_chunks()
            cols[key] = np.stack([decode_image(c, root, str(f["path"])) for c in col.to_pylist()])
        elif ft["dtype"] == "video":
            v = videos[key]
            path = _video_path(root, info, key, (v[f"videos/{key}/chunk_index"], v[f"videos/{key}/file_index"]))
            ts = v[f"videos/{key}/from_timestamp"] + np.arange(f["length"]) / fps
            # Decoded frames, not the originals the writer saw: the stats of a rebuilt video row
            # differ from the lost ones by the codec's error.
            cols[key] = decode_at(path, ts, _TOLERANCE_S)
        elif ft["dtype"] != "string":
            cols[key] = column_to_numpy(table.column(key), key, ft, f["path"])
    task_idx = list(dict.fromkeys(cols["task_index"].reshape(-1).tolist()))
    loc = _loc_of(f["path"])
    row: dict[str, Any] = {
        "episode_index": e,
        "tasks": [tasks[i] for i in task_idx],
        "length": f["length"],
        "data/chunk_index": loc[0],
        "data/file_index": loc[1],
        "dataset_from_index": f["from"],
        "dataset_to_index": f["from"] + f["length"],
    }
    for key in videos:
        row.update(videos[key])
    row.update(stats_columns(episode_stats(cols, features, fps)))
    return row


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # no hard links on this file system
        shutil.copy2(src, dst)


def apply_repair(plan: RepairPlan, extra_files: dict[str, Any] | None = None) -> None:
    """Write the repaired dataset and swap it in (see the module docstring). ``extra_files`` maps
    paths inside the dataset to JSON documents written into the repaired copy (the recorder's
    bookkeeping, renumbered), so they change in the same swap."""
    root, info = plan.root, plan.info
    features = info["features"]
    stage = staging_folder(root)
    fd = lock_dataset(root)
    try:
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir()
        kept = plan.kept
        new_of = {old: i for i, old in enumerate(kept)}
        # New frame ranges.
        rows: list[dict] = []
        start = 0
        for i, old in enumerate(kept):
            r = dict(plan.rows[old])
            n = int(r["length"])
            if (r["episode_index"], r["dataset_from_index"]) != (i, start):
                r["episode_index"], r["dataset_from_index"], r["dataset_to_index"] = i, start, start + n
                st = {
                    "episode_index": vector_stats(np.full((n, 1), i, dtype=np.int64)),
                    "index": vector_stats(np.arange(start, start + n, dtype=np.int64).reshape(n, 1)),
                }
                r.update({k: v for k, v in stats_columns(st).items() if k in r})
            # All rows go into one metadata file (lerobot reads any split; the writer rotates later).
            r["meta/episodes/chunk_index"], r["meta/episodes/file_index"] = 0, 0
            rows.append(r)
            start += n
        # Data files: kept as they are (hard link) unless rows must go or be renumbered.
        schema = data_schema(features)
        by_file: dict[Path, list[int]] = {}
        for old in kept:
            r = plan.rows[old]
            by_file.setdefault(_data_path(root, info, _data_loc(r)), []).append(old)
        for path, olds in by_file.items():
            dst = stage / path.relative_to(root)
            table = read_parquet(path)
            ep_col = table.column("episode_index").to_numpy()
            same = all(
                new_of[o] == o and rows[o]["dataset_from_index"] == plan.rows[o]["dataset_from_index"] for o in olds
            )
            if same and set(np.unique(ep_col).tolist()) == set(olds):
                _link_or_copy(path, dst)
                continue
            parts = []
            for o in olds:
                part = table.take(pa.array(np.flatnonzero(ep_col == o)))
                r = rows[new_of[o]]
                m = part.num_rows
                part = part.set_column(
                    part.schema.get_field_index("episode_index"), "episode_index",
                    pa.array(np.full(m, r["episode_index"], dtype=np.int64)),
                )
                part = part.set_column(
                    part.schema.get_field_index("index"), "index",
                    pa.array(r["dataset_from_index"] + np.arange(m, dtype=np.int64)),
                )
                parts.append(part.select(schema.names).cast(schema))
            write_parquet(parts, dst)
        # Videos: linked; a cut-short one still holding kept episodes is rewritten up to their end.
        for key in [k for k, f in features.items() if f["dtype"] == "video"]:
            for r in rows:
                loc = (r[f"videos/{key}/chunk_index"], r[f"videos/{key}/file_index"])
                src = _video_path(root, info, key, loc)
                dst = stage / src.relative_to(root)
                if dst.exists():
                    continue
                if src in plan.video_cuts:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    remux([(src, plan.video_cuts[src])], dst)
                else:
                    _link_or_copy(src, dst)
        if rows:
            meta_path = stage / layout.EPISODES_PATH.format(chunk_index=0, file_index=0)
            write_parquet([pa.Table.from_pylist(rows)], meta_path)
            layout.write_json(aggregate_stats([_stats_from_row(r, features) for r in rows]), stage / layout.STATS_PATH)
        if plan.tasks_rebuilt or not (root / layout.TASKS_PATH).is_file():
            if plan.tasks:
                write_tasks(plan.tasks, stage / layout.TASKS_PATH)
        else:
            _link_or_copy(root / layout.TASKS_PATH, stage / layout.TASKS_PATH)
        # Everything else in the folder (the recorder's bookkeeping, a README, ...) comes along.
        for p in root.rglob("*"):
            rel = p.relative_to(root)
            if (
                p.is_file()
                and p.name != _LOCK_NAME
                and not p.name.endswith(layout.TMP_SUFFIX)
                and not any(rel.as_posix() == r or rel.as_posix().startswith(r + "/") for r in _REBUILT)
                and rel.as_posix() not in (extra_files or {})
            ):
                _link_or_copy(p, stage / rel)
        for rel, doc in (extra_files or {}).items():
            layout.write_json(doc, stage / rel)
        new_info = dict(info)
        new_info["total_episodes"] = len(rows)
        new_info["total_frames"] = start
        new_info["total_tasks"] = len(plan.tasks)
        new_info["splits"] = {"train": f"0:{len(rows)}"} if rows else {}
        layout.write_json(new_info, stage / layout.INFO_PATH)  # last: a stage with info.json is complete
        old = _old_folder(root)
        if old.exists():
            shutil.rmtree(old)
        os.rename(root, old)
        os.rename(stage, root)
    finally:
        unlock_dataset(fd, _old_folder(root) if _old_folder(root).exists() else root)
    shutil.rmtree(_old_folder(root), ignore_errors=True)


def repair_dataset(root: str | Path, dry_run: bool = False) -> RepairPlan:
    """Find and repair the damage in ``root``, printing what is damaged and dropped. A recording
    made by robopolicy-record has its bookkeeping renumbered too, with the dropped trials queued,
    so the next robopolicy-record run records them again. Returns the plan (``.needed``: damage)."""
    root = Path(root)
    finish_interrupted_repair(root)
    plan = plan_repair(root)
    if not plan.needed:
        print(f"{root}: no damage found ({plan.info['total_episodes']} episodes)")
        return plan
    print(plan.describe())
    if dry_run:
        return plan
    extra = {}
    if (root / layout.RECORDING_PATH).is_file():
        from robopolicy.data.record import recording_after_repair

        extra[layout.RECORDING_PATH] = recording_after_repair(root, int(plan.info["total_episodes"]), plan.kept)
    apply_repair(plan, extra)
    print(f"{root}: repaired: {len(plan.kept)} episodes kept, {len(plan.dropped)} dropped")
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m robopolicy.data.repair",
        description="Repair a damaged LeRobotDataset v3.0: rebuild lost metadata from the data files and "
        "drop (and list) the episodes whose data or video files are lost.",
    )
    parser.add_argument("root", help="dataset folder")
    parser.add_argument("--dry-run", action="store_true", help="only report what is damaged and what would change")
    args = parser.parse_args(argv)
    repair_dataset(args.root, dry_run=args.dry_run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
