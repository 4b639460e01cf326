"""``LeRobotDataset``: a torch map-style dataset over a local LeRobotDataset folder (v3.0 or v2.x).

Items have lerobot's semantics: every feature of the frame (state/action float tensors, cameras as
float32 (C, H, W) in [0, 1]; one difference: an action/observation feature of shape (1,) stays a
(1,) vector where lerobot returns a scalar), ``timestamp``, ``frame_index``, ``episode_index``, ``index``,
``task_index`` and ``task`` (the instruction string). With ``delta_timestamps={key: [s, ...]}`` the
key holds a window (T, ...) of frames at offsets ``round(s * fps)``, clamped to the episode (the
edge frame repeats), plus ``<key>_is_pad`` (T,) marking the clamped slots.

For speed the parquet tables are loaded once into contiguous numpy arrays and windows are pure
index arithmetic. Camera frames (mp4 or PNG-in-parquet) are decoded a whole episode at a time and
kept as uint8 in a per-process LRU cache bounded by ``cache_mb``, so each DataLoader worker decodes
an episode once instead of seeking per item. ``preload()`` fills the cache up front in the calling
process, which forked DataLoader workers then share.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import torch

from robopolicy.data import layout
from robopolicy.data.stats import exact_quantiles
from robopolicy.data.images import decode_image
from robopolicy.data.columns import column_to_numpy as _column_to_numpy
from robopolicy.data.metadata import DatasetMeta, read_parquet, repair_hint
from robopolicy.data.video import decode_at, mp4_truncated, video_duration_s
from robopolicy.types import ACTION_KEY, IMAGE_PREFIX, STATE_KEY, FeatureSpec


class LeRobotDataset(torch.utils.data.Dataset):
    """Read a LeRobotDataset (v3.0 or v2.x) from ``root``; see the module docstring."""

    def __init__(
        self,
        root: str | Path,
        delta_timestamps: dict[str, Sequence[float]] | None = None,
        episodes: Sequence[int] | None = None,
        video_backend: str = "pyav",
        *,
        tolerance_s: float = 1e-4,
        cache_video: bool = True,
        cache_mb: float = 2048,
        check_videos: bool = True,
        camera_keys: Sequence[str] | None = None,
    ):
        """
        Args:
            root: dataset folder (holds meta/, data/, videos/).
            delta_timestamps: per key, time offsets in seconds of the frames to stack.
            episodes: episode indices to load (default: all).
            video_backend: only "pyav".
            tolerance_s: largest allowed gap between a requested and a decoded video timestamp.
            cache_video: keep decoded camera frames of whole episodes (mp4 and PNG) in memory.
            cache_mb: memory bound of that cache, per process (least recently used episodes go).
            check_videos: open every referenced mp4 at load time to catch missing/short files early.
            camera_keys: camera features to decode and return (default all; [] skips every camera,
                e.g. to train a state-only policy on an image dataset).
        """
        if video_backend != "pyav":
            raise ValueError(f"video_backend {video_backend!r} is not supported (only 'pyav')")
        self.root = Path(root)
        self.meta = DatasetMeta.load(self.root)
        self.tolerance_s = float(tolerance_s)
        self.cache_video = bool(cache_video)
        self.cache_bytes = int(cache_mb * 2**20)
        n_total = self.meta.total_episodes
        if episodes is None:
            sel = list(range(n_total))
        else:
            sel = sorted({int(e) for e in episodes})
            bad = [e for e in sel if not 0 <= e < n_total]
            if bad:
                raise ValueError(f"{self.root}: episodes {bad} do not exist (dataset has {n_total} episodes)")
        self.episodes = sel
        all_cams = self.meta.camera_keys
        if camera_keys is None:
            self._cameras = list(all_cams)
        else:
            unknown = [k for k in camera_keys if k not in all_cams]
            if unknown:
                raise ValueError(f"{self.root}: camera_keys {unknown} are not camera features ({all_cams})")
            self._cameras = [k for k in all_cams if k in camera_keys]
        self._eps = [self.meta.episodes[e] for e in sel]
        if not self._eps:
            raise ValueError(f"{self.root}: no episodes to load (the dataset has {n_total})")
        self._load_frames_table()
        self.delta_timestamps = {k: list(v) for k, v in (delta_timestamps or {}).items()}
        self._deltas = self._resolve_deltas(self.delta_timestamps)
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cache_used = 0
        self._preloaded = False
        if check_videos:
            self._check_videos()

    # ------------------------------------------------------------------ loading
    def _load_frames_table(self) -> None:
        meta = self.meta
        feats = meta.features
        columns = [k for k, f in feats.items() if f["dtype"] != "video"]
        by_file: dict[Path, list[int]] = {}
        for ep in self._eps:
            by_file.setdefault(meta.data_file(ep), []).append(int(ep["episode_index"]))
        arrays: dict[str, list[np.ndarray]] = {k: [] for k in columns if feats[k]["dtype"] != "image"}
        images: dict[str, list[pa.Array]] = {k: [] for k in meta.image_keys if k in self._cameras}
        for path, eps in by_file.items():
            table = read_parquet(path)
            have = set(table.column_names)
            missing = [c for c in columns if c not in have]
            if missing:
                raise ValueError(
                    f"{path}: column(s) {missing} declared in meta/info.json are missing from the file"
                )
            extra = [c for c in table.column_names if c not in columns and not c.startswith("__index_level")]
            if extra:
                raise ValueError(f"{path}: column(s) {extra} are not features in meta/info.json")
            ep_col = table.column("episode_index").to_numpy()
            stray = np.unique(ep_col[ep_col >= meta.total_episodes])
            if len(stray):
                raise ValueError(
                    f"{path}: holds rows of episode(s) {stray.tolist()} that meta/info.json does not list "
                    f"(total_episodes={meta.total_episodes}): half-written episode; {repair_hint(self.root)}"
                )
            mask = np.isin(ep_col, eps)
            if not mask.all():
                table = table.filter(pa.array(mask))
            for k in arrays:
                arrays[k].append(_column_to_numpy(table.column(k), k, feats[k], path))
            for k in images:
                col = table.column(k).combine_chunks()
                if not pa.types.is_struct(col.type):
                    raise ValueError(
                        f"{path}: image column {k!r} should be struct<bytes, path>, got {col.type}"
                    )
                images[k].append(col)
        self._arrays: dict[str, np.ndarray] = {k: np.concatenate(v) for k, v in arrays.items()}
        for k, v in self._arrays.items():
            # lerobot returns shape-(1,) features as scalars; policies need actions/observations as
            # vectors, so those keep their declared (1,) (other scalars, e.g. rewards, stay 0-d).
            if v.ndim == 1 and v.dtype != object and (k == ACTION_KEY or k.startswith("observation.")):
                self._arrays[k] = v[:, None]
        order = np.argsort(self._arrays["index"], kind="stable")
        if not np.array_equal(order, np.arange(len(order))):
            self._arrays = {k: v[order] for k, v in self._arrays.items()}
        self._images: dict[str, list] = {}
        for k, cols in images.items():
            col = pa.concat_arrays(cols).take(pa.array(order))
            self._images[k] = [col.field("bytes").to_pylist(), col.field("path").to_pylist()]
        self._build_episode_index()

    def _build_episode_index(self) -> None:
        ep_col = self._arrays["episode_index"]
        index = self._arrays["index"]
        n = len(ep_col)
        starts = np.zeros(len(self._eps), dtype=np.int64)
        ends = np.zeros(len(self._eps), dtype=np.int64)
        row_ep = np.zeros(n, dtype=np.int64)
        pos = 0
        for j, ep in enumerate(self._eps):
            e, length = int(ep["episode_index"]), int(ep["length"])
            where = self.meta.data_file(ep)
            seg = ep_col[pos : pos + length]
            if len(seg) != length or (seg != e).any():
                count = int((ep_col == e).sum())
                raise ValueError(
                    f"{where}: episode {e} should have {length} rows (meta/episodes) but has {count}"
                    + (" in order" if count == length else "")
                    + f"; {repair_hint(self.root) if count < length else 'the data and the episode metadata disagree'}"
                )
            first = int(ep.get("dataset_from_index", index[pos]))
            if index[pos] != first or index[pos + length - 1] != first + length - 1:
                raise ValueError(
                    f"{where}: episode {e} rows have index {index[pos]}..{index[pos + length - 1]} but the episode "
                    f"metadata says {first}..{first + length - 1}"
                )
            starts[j], ends[j] = pos, pos + length
            row_ep[pos : pos + length] = j
            pos += length
        if pos != n:
            raise ValueError(
                f"{self.root}: data has {n} rows for the selected episodes but their lengths sum to {pos}"
            )
        self._starts, self._ends, self._row_ep = starts, ends, row_ep
        self._single = np.arange(n, dtype=np.int64)

    def _resolve_deltas(self, delta_timestamps: dict[str, list[float]]) -> dict[str, np.ndarray]:
        out = {}
        fps = float(self.meta.fps)
        for key, offsets in delta_timestamps.items():
            if key not in self.meta.features:
                raise ValueError(
                    f"delta_timestamps: {key!r} is not a feature of {self.root} ({sorted(self.meta.features)})"
                )
            if key in self.meta.camera_keys and key not in self._cameras:
                raise ValueError(
                    f"delta_timestamps: camera {key!r} is excluded by camera_keys={self._cameras}"
                )
            off = np.asarray(offsets, dtype=np.float64)
            if off.ndim != 1 or len(off) == 0:
                raise ValueError(
                    f"delta_timestamps[{key!r}] must be a non-empty list of seconds, got {offsets!r}"
                )
            frames = off * fps
            rounded = np.round(frames)
            worst = np.abs(frames - rounded).max() / fps
            if worst > self.tolerance_s:
                raise ValueError(
                    f"delta_timestamps[{key!r}]: offsets {offsets} are not multiples of 1/fps = {1 / fps:.6g} s "
                    f"(off by {worst:.3g} s > tolerance {self.tolerance_s} s)"
                )
            out[key] = rounded.astype(np.int64)
        return out

    def _check_videos(self) -> None:
        need: dict[Path, tuple[float, int]] = {}
        for j, ep in enumerate(self._eps):
            last_ts = float(self._arrays["timestamp"][self._ends[j] - 1])
            for key in [k for k in self.meta.video_keys if k in self._cameras]:
                path = self.meta.video_file(ep, key)
                t = self.meta.video_from_timestamp(ep, key) + last_ts
                if path not in need or need[path][0] < t:
                    need[path] = (t, int(ep["episode_index"]))
        half_frame = 0.5 / float(self.meta.fps)
        for path, (t, e) in need.items():
            try:
                dur = video_duration_s(path)
            except (FileNotFoundError, ValueError) as err:
                raise type(err)(f"{err}; {repair_hint(self.root)}") from err
            if t > dur - half_frame + self.tolerance_s:
                raise ValueError(
                    f"{path}: video is {dur:.3f} s long but episode {e} needs a frame at {t:.3f} s: "
                    f"truncated or half-written video; {repair_hint(self.root)}"
                )
            # A cut-short copy of a faststart mp4 still reports its full duration: check the boxes.
            cut = mp4_truncated(path)
            if cut:
                raise ValueError(f"{path}: truncated video ({cut}); {repair_hint(self.root)}")

    # ------------------------------------------------------------------ public info
    @property
    def fps(self) -> float:
        return self.meta.fps

    @property
    def features(self) -> dict[str, dict]:
        return self.meta.features

    @property
    def stats(self) -> dict | None:
        return self.meta.stats

    def training_stats(self) -> dict | None:
        """stats.json's statistics, with the action's quantiles recomputed exactly over the loaded
        frames (see ``stats.exact_quantiles``: the stored ones average per-episode quantiles)."""
        if self.meta.stats is None:
            return None
        stats = dict(self.meta.stats)
        if ACTION_KEY in stats and ACTION_KEY in self._arrays:
            stats[ACTION_KEY] = {**stats[ACTION_KEY], **exact_quantiles(self._arrays[ACTION_KEY])}
        return stats

    @property
    def num_episodes(self) -> int:
        return len(self._eps)

    @property
    def num_frames(self) -> int:
        return len(self._row_ep)

    @property
    def camera_keys(self) -> list[str]:
        """Camera features this dataset decodes and returns."""
        return list(self._cameras)

    @property
    def episode_bounds(self) -> np.ndarray:
        """(num_episodes, 2) [start, end) item indices of each loaded episode."""
        return np.stack([self._starts, self._ends], axis=1)

    def __len__(self) -> int:
        return self.num_frames

    def column(self, key: str) -> np.ndarray:
        """Every loaded frame's value of a non-camera feature, in item order (read-only view):
        (N,) for scalars such as ``next.reward``, (N, *shape) otherwise."""
        if key not in self._arrays:
            raise KeyError(f"{self.root}: no non-camera feature {key!r} (have: {sorted(self._arrays)})")
        view = self._arrays[key].view()
        view.flags.writeable = False
        return view

    def feature_spec(self, use_language: bool = False) -> FeatureSpec:
        """Shapes a policy is built for: action/state widths and every camera of the dataset as
        (C, H, W) (whatever ``camera_keys`` selected)."""
        feats = self.meta.features
        if ACTION_KEY not in feats:
            raise ValueError(
                f"{self.root / layout.INFO_PATH}: no 'action' feature, cannot build a FeatureSpec"
            )
        cams = {}
        for key in self.meta.camera_keys:
            if not key.startswith(IMAGE_PREFIX):
                continue
            cams[key[len(IMAGE_PREFIX) :]] = self._chw(key)
        state = feats.get(STATE_KEY)
        return FeatureSpec(
            action_dim=int(np.prod(feats[ACTION_KEY]["shape"])),
            state_dim=None if state is None else int(np.prod(state["shape"])),
            cameras=cams,
            fps=float(self.meta.fps),
            use_language=use_language,
        )

    def _chw(self, key: str) -> tuple[int, int, int]:
        ft = self.meta.features[key]
        shape = [int(s) for s in ft["shape"]]
        names = ft.get("names") or []
        if len(names) == 3 and names[0] in ("channels", "channel", "c"):
            return tuple(shape)  # already (C, H, W)
        return (shape[2], shape[0], shape[1])

    def _hwc(self, key: str) -> tuple[int, int, int]:
        c, h, w = self._chw(key)
        return h, w, c

    # ------------------------------------------------------------------ camera frames
    def _decode_rows(self, key: str, j: int, rows: np.ndarray) -> np.ndarray:
        """uint8 frames (len(rows), H, W, 3) of camera ``key`` for item rows of loaded episode j."""
        ep = self._eps[j]
        if key in self._images:
            data, paths = self._images[key]
            where = f"{self.meta.data_file(ep)} column {key!r}"
            frames = np.stack(
                [
                    decode_image({"bytes": data[r], "path": paths[r]}, self.root, f"{where} row {r}")
                    for r in rows
                ]
            )
        else:
            path = self.meta.video_file(ep, key)
            ts = self.meta.video_from_timestamp(ep, key) + self._arrays["timestamp"][rows].astype(np.float64)
            frames = decode_at(path, ts, self.tolerance_s)
        h, w, c = self._hwc(key)
        if frames.shape[1:] != (h, w, c):
            src = self.meta.data_file(ep) if key in self._images else self.meta.video_file(ep, key)
            raise ValueError(
                f"{src}: {key!r} frames are {frames.shape[1:]} but meta/info.json declares (H, W, C)={(h, w, c)}"
            )
        return frames

    def _episode_frames(self, key: str, j: int) -> np.ndarray | None:
        """All frames of loaded episode j (cached), or None when caching is off or it cannot fit."""
        hit = self._cache.get((key, j))
        if hit is not None:
            self._cache.move_to_end((key, j))
            return hit
        if not self.cache_video:
            return None
        h, w, c = self._hwc(key)
        size = int(self._ends[j] - self._starts[j]) * h * w * c
        if size > self.cache_bytes:
            return None
        frames = self._decode_rows(key, j, np.arange(self._starts[j], self._ends[j]))
        while self._cache and self._cache_used + size > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cache_used -= old.nbytes
        self._cache[(key, j)] = frames
        self._cache_used += frames.nbytes
        return frames

    def _frames(self, key: str, j: int, rows: np.ndarray) -> np.ndarray:
        ep_frames = self._episode_frames(key, j)
        if ep_frames is not None:
            return ep_frames[rows - self._starts[j]]
        uniq, inv = np.unique(rows, return_inverse=True)
        return self._decode_rows(key, j, uniq)[inv]

    def preload(self) -> "LeRobotDataset":
        """Decode every camera frame of the loaded episodes now (as far as ``cache_mb`` allows)."""
        if not self.cache_video:
            raise ValueError("preload() needs cache_video=True")
        for key in self._cameras:
            for j in range(len(self._eps)):
                self._episode_frames(key, j)
        self._preloaded = True
        return self

    def __getstate__(self) -> dict:
        # Worker processes fill their own cache lazily; only an explicit preload travels with a pickle.
        state = self.__dict__.copy()
        if not self._preloaded:
            state["_cache"] = OrderedDict()
            state["_cache_used"] = 0
        return state

    # ------------------------------------------------------------------ items
    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self._row_ep)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} frames")
        i = int(i) % n
        j = int(self._row_ep[i])
        s, e = int(self._starts[j]), int(self._ends[j])
        item: dict[str, Any] = {}
        windows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for key, d in self._deltas.items():
            want = i + d
            windows[key] = (np.clip(want, s, e - 1), (want < s) | (want >= e))
        # numpy, not torch, for the per-item work: torch's threaded kernels on small tensors are
        # slow under CPU contention (DataLoader workers + simulators on the same cores).
        for key in self._cameras:
            rows = windows[key][0] if key in windows else self._single[i : i + 1]
            frames = self._frames(key, j, rows).transpose(0, 3, 1, 2)
            t = np.true_divide(frames, np.float32(255), dtype=np.float32, order="C")
            item[key] = torch.from_numpy(t if key in windows else t[0])
        for key, arr in self._arrays.items():
            if arr.dtype == object:
                item[key] = arr[windows[key][0]].tolist() if key in windows else arr[i]
            elif key in windows:
                item[key] = torch.from_numpy(arr[windows[key][0]])
            else:
                item[key] = torch.from_numpy(arr[i : i + 1].reshape(arr.shape[1:]))
        for key, (_, pad) in windows.items():
            item[f"{key}_is_pad"] = torch.from_numpy(pad)
        item["task"] = self.meta.tasks[int(self._arrays["task_index"][i])]
        return item

    def __repr__(self) -> str:
        return (
            f"LeRobotDataset({str(self.root)!r}, {self.meta.version}, episodes={self.num_episodes}, "
            f"frames={self.num_frames}, fps={self.fps}, cameras={self.camera_keys})"
        )
