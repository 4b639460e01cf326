"""Record scripted-expert demonstrations of a task suite into a LeRobotDataset v3.0.

Worker processes roll out episodes (trial ``i`` of a task starts from
``suite.trial_seed(task, i, seed_split)``); the parent writes them in trial order with one
``LeRobotDatasetWriter``, so the dataset is the same whatever the number of workers. By default
only successful episodes are kept and more trials are run until ``episodes`` successes per task
(at most ``3 * episodes`` attempts); with ``keep_failed=True`` exactly the first ``episodes`` trials
are kept. Multi-task suites record ``episodes`` per task; each episode's task is the instruction.

Interruption: the writer commits episode by episode, and ``meta/robopolicy_recording.json``
remembers which trial produced each episode (written before and after each commit), so running
the same command again continues where it stopped with the same trials.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable


from robopolicy.data import layout
from robopolicy.data.rollout import IMAGE_PREFIX, EpisodeResult, RolloutSpec, run_episode, suite_tasks

RECORDING_PATH = "meta/robopolicy_recording.json"
MAX_ATTEMPTS_FACTOR = 3


@dataclass
class RecordSummary:
    """What ``record_dataset`` did."""

    root: Path
    """Dataset folder."""
    episodes: int
    """Episodes in the dataset now (including ones from earlier runs)."""
    frames: int
    """Frames in the dataset now."""
    new_episodes: int
    """Episodes written by this call."""
    attempts: int
    """Rollouts run by this call."""
    failed: int
    """Rollouts of this call that did not succeed (dropped unless keep_failed)."""
    per_task: dict[str, int] = field(default_factory=dict)
    """Episodes in the dataset per task."""


def _features(result: EpisodeResult, use_videos: bool) -> dict[str, dict]:
    feats = {}
    for key, arr in result.frames.items():
        if key.startswith(IMAGE_PREFIX):
            feats[key] = {
                "dtype": "video" if use_videos else "image",
                "shape": list(arr.shape[1:]),
                "names": ["height", "width", "channels"],
            }
        else:
            feats[key] = {"dtype": "float32", "shape": list(arr.shape[1:]), "names": None}
    return feats


class _Progress:
    """The recorder's bookkeeping file: config, (task, trial) of every committed episode, the
    episode being saved, and the next trial per task."""

    def __init__(self, root: Path, config: dict):
        self.path = root / RECORDING_PATH
        self.config = config
        self.episodes: list[dict] = []
        self.next_trial: dict[str, int] = {}
        self.pending: dict | None = None

    def load(self, committed: int) -> None:
        if not self.path.is_file():
            if committed:
                raise ValueError(
                    f"{self.path.parent.parent}: holds {committed} episodes but no {RECORDING_PATH}; it was not "
                    f"made by robopolicy-record, so it cannot be resumed (choose another output)"
                )
            return
        d = layout.read_json(self.path)
        for k, v in self.config.items():
            if k in d.get("config", {}) and d["config"][k] != v:
                raise ValueError(
                    f"{self.path}: this dataset was recorded with {k}={d['config'][k]!r}, now {k}={v!r}; "
                    f"use the same settings to continue it, or another output"
                )
        eps = d.get("episodes", [])
        pending = d.get("pending")
        if (
            pending is not None
            and pending["episode_index"] < committed
            and len(eps) == pending["episode_index"]
        ):
            eps.append(pending)  # killed between the writer's commit and our second write
        eps = [e for e in eps if e["episode_index"] < committed]
        if len(eps) != committed:
            raise ValueError(f"{self.path}: lists {len(eps)} episodes, the dataset has {committed}")
        self.episodes = eps
        self.next_trial = {k: int(v) for k, v in d.get("next_trial", {}).items()}
        for e in eps:
            self.next_trial[e["task"]] = max(self.next_trial.get(e["task"], 0), e["trial"] + 1)

    def save(self) -> None:
        layout.write_json(
            {
                "config": self.config,
                "episodes": self.episodes,
                "pending": self.pending,
                "next_trial": self.next_trial,
            },
            self.path,
        )

    def count(self, task: str) -> int:
        return sum(e["task"] == task for e in self.episodes)


def record_dataset(
    suite_name: str,
    output: str | Path,
    episodes: int,
    obs: str = "state",
    image_size: int = 84,
    keep_failed: bool = False,
    num_workers: int = 2,
    use_videos: bool = True,
    seed_split: str = "train",
    progress: bool = True,
    *,
    stop_on_success: bool = True,
    post_success_steps: int = 4,
    suite_factory: str = "envs:make_suite",
    writer_options: dict[str, Any] | None = None,
) -> RecordSummary:
    """Record ``episodes`` expert episodes per task of ``suite_name`` into ``output`` (see module doc).

    ``num_workers=0`` rolls out in this process. ``writer_options`` go to
    ``LeRobotDatasetWriter.create`` (e.g. ``video=VideoEncoding(...)``, file size limits).
    """
    from tqdm.auto import tqdm

    from robopolicy.data.writer import LeRobotDatasetWriter

    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    if seed_split not in ("train", "eval"):
        raise ValueError(f"seed_split must be 'train' or 'eval', got {seed_split!r}")
    root = Path(output)
    spec = RolloutSpec(
        suite_name, obs, int(image_size), seed_split, stop_on_success, int(post_success_steps), suite_factory
    )
    config = {
        "suite": suite_name,
        "obs": obs,
        "image_size": int(image_size),
        "keep_failed": bool(keep_failed),
        "seed_split": seed_split,
        "use_videos": bool(use_videos),
        "stop_on_success": bool(stop_on_success),
        "post_success_steps": int(post_success_steps),
    }
    info_path = root / layout.INFO_PATH
    prog = _Progress(root, config)
    prog.load(int(layout.read_json(info_path)["total_episodes"]) if info_path.exists() else 0)
    writer = LeRobotDatasetWriter.resume(root) if info_path.exists() else None

    pool = mp.get_context("spawn").Pool(num_workers) if num_workers > 0 else None
    try:
        tasks = pool.apply(suite_tasks, (spec,)) if pool is not None else suite_tasks(spec)
    except BaseException:
        if pool is not None:
            pool.terminate()
        if writer is not None:
            writer.finalize()
        raise
    need = {t: episodes for t in tasks}
    first = {t: prog.next_trial.get(t, 0) for t in tasks}
    # Attempt budget per call: keep_failed keeps trials 0..episodes-1 whatever their outcome.
    cap = {
        t: first[t] + (max(0, episodes - prog.count(t)) * (1 if keep_failed else MAX_ATTEMPTS_FACTOR))
        for t in tasks
    }
    next_trial = dict(first)
    inflight = {t: 0 for t in tasks}
    window = max(1, 2 * num_workers)
    pending: deque[tuple[str, int, Callable[[], EpisodeResult]]] = deque()

    def submit() -> None:
        while len(pending) < window:
            for t in tasks:
                if prog.count(t) + inflight[t] < need[t] and next_trial[t] < cap[t]:
                    break
            else:
                return
            trial = next_trial[t]
            next_trial[t] += 1
            inflight[t] += 1
            if pool is not None:
                fut = pool.apply_async(run_episode, (spec, t, trial))
                pending.append((t, trial, fut.get))
            else:
                pending.append((t, trial, lambda t=t, trial=trial: run_episode(spec, t, trial)))

    already = sum(min(prog.count(t), need[t]) for t in tasks)
    bar = tqdm(
        total=episodes * len(tasks),
        initial=already,
        desc=f"record {suite_name}",
        unit="ep",
        disable=not progress,
    )
    attempts = failed = new = 0
    try:
        submit()
        while pending:
            t, trial, get = pending.popleft()
            result = get()
            inflight[t] -= 1
            attempts += 1
            prog.next_trial[t] = max(prog.next_trial.get(t, 0), trial + 1)
            failed += not result.success
            if result.success or keep_failed:
                if writer is None:
                    writer = LeRobotDatasetWriter.create(
                        root,
                        result.fps,
                        _features(result, use_videos),
                        use_videos=use_videos,
                        robot_type=suite_name.split("/")[0],
                        **(writer_options or {}),
                    )
                frames = result.frames
                for k in range(result.length):
                    writer.add_frame({key: arr[k] for key, arr in frames.items()}, task=result.instruction)
                entry = {
                    "episode_index": writer.num_episodes,
                    "task": t,
                    "trial": trial,
                    "seed": result.seed,
                    "success": bool(result.success),
                }
                prog.pending = entry
                prog.save()
                writer.save_episode()
                prog.episodes.append(entry)
                prog.pending = None
                new += 1
                bar.update(1)
            prog.save()
            bar.set_postfix(attempts=attempts, failed=failed)
            submit()
        for t in tasks:
            if prog.count(t) < need[t]:
                bar.write(
                    f"warning: task {t!r}: only {prog.count(t)}/{need[t]} episodes after trials up to {next_trial[t] - 1} "
                    f"(attempt cap {MAX_ATTEMPTS_FACTOR}x); re-run to try more trials"
                )
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        if writer is not None:
            writer.finalize()
    return RecordSummary(
        root=root,
        episodes=writer.num_episodes if writer else 0,
        frames=writer.num_frames if writer else 0,
        new_episodes=new,
        attempts=attempts,
        failed=failed,
        per_task={t: prog.count(t) for t in tasks},
    )


def summary_dict(s: RecordSummary) -> dict:
    d = asdict(s)
    d["root"] = str(s.root)
    return d
