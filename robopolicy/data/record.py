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

Damage: running it again also repairs a dataset whose files were damaged (``repair.py``): lost
episode metadata is rebuilt from the data files, and the episodes a missing or cut-short data or
video file held are dropped (each one printed) and re-recorded from the same trials, so the dataset
again holds the requested number.
"""

from __future__ import annotations

import inspect
import json
import multiprocessing as mp
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable


from robopolicy.data import layout
from robopolicy.data.rollout import IMAGE_PREFIX, EpisodeResult, RolloutSpec, run_episode, suite_tasks

RECORDING_PATH = layout.RECORDING_PATH
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
    dropped: list[dict] = field(default_factory=list)
    """Episodes a repair of damaged files dropped before recording ((task, trial, reason) each);
    their trials were queued to be recorded again."""


def _features(result: EpisodeResult, use_videos: bool) -> dict[str, dict]:
    feats = {}
    for key, arr in result.frames.items():
        if key.startswith(IMAGE_PREFIX):
            feats[key] = {
                "dtype": "video" if use_videos else "image",
                "shape": list(arr.shape[1:]),
                "names": ["height", "width", "channels"],
            }
        else:  # per-frame scalars (next.reward, next.done) are shape-(1,) features, as in lerobot
            dtype = "bool" if arr.dtype.kind == "b" else "float32"
            feats[key] = {"dtype": dtype, "shape": list(arr.shape[1:]) or [1], "names": None}
    return feats


class _Progress:
    """The recorder's bookkeeping file: config, (task, trial) of every committed episode, the
    episode being saved, the next trial per task, the trials to record again (a repair dropped
    their episodes) and the episodes per task last asked for (for the repair command in errors)."""

    def __init__(self, root: Path, config: dict):
        self.path = root / RECORDING_PATH
        self.config = config
        self.episodes: list[dict] = []
        self.next_trial: dict[str, int] = {}
        self.pending: dict | None = None
        self.redo: list[dict] = []
        self.requested: int | None = None

    def _again(self) -> str:
        root = self.path.parent.parent
        return (
            f"it says which trial made each episode, so the dataset cannot be continued without it: record "
            f"into another output, or move this one aside (mv {root} {root}.damaged) and run the same command again"
        )

    def _read(self) -> dict:
        again = self._again()
        try:
            d = layout.read_json(self.path)
        except ValueError as e:
            raise ValueError(f"{e}; {again}") from e
        ok = isinstance(d, dict) and isinstance(d.get("episodes", []), list)
        ok = ok and all(
            isinstance(e, dict) and {"episode_index", "task", "trial"} <= set(e) for e in d.get("episodes", [])
        )
        if not ok:
            raise ValueError(
                f"{self.path}: not a recording file (expected config, episodes: [{{task, trial}}]); {again}"
            )
        return d

    def load(self, committed: int) -> None:
        if not self.path.is_file():
            if committed:
                raise ValueError(
                    f"{self.path.parent.parent}: holds {committed} episodes but no {RECORDING_PATH}; it was not "
                    f"made by robopolicy-record, so it cannot be resumed (choose another output)"
                )
            return
        d = self._read()
        for k, v in self.config.items():
            if k in d.get("config", {}) and not _same_setting(d["config"][k], v):
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
            raise ValueError(f"{self.path}: lists {len(eps)} episodes, the dataset has {committed}; {self._again()}")
        self.episodes = eps
        self.next_trial = {k: int(v) for k, v in d.get("next_trial", {}).items()}
        for e in eps:
            self.next_trial[e["task"]] = max(self.next_trial.get(e["task"], 0), e["trial"] + 1)
        redo = list(d.get("redo", []))
        if pending is not None:  # saved but maybe never committed: its trial is recorded again if so
            redo.append({"task": pending["task"], "trial": pending["trial"]})
        done = {(e["task"], e["trial"]) for e in eps}
        trials = dict.fromkeys((r["task"], r["trial"]) for r in redo)
        self.redo = [{"task": t, "trial": n} for t, n in trials if (t, n) not in done]
        self.requested = d.get("episodes_requested")

    def document(self) -> dict:
        return {
            "config": self.config,
            "episodes": self.episodes,
            "pending": self.pending,
            "next_trial": self.next_trial,
            "redo": self.redo,
            "episodes_requested": self.requested,
        }

    def save(self) -> None:
        layout.write_json(self.document(), self.path)

    def count(self, task: str) -> int:
        return sum(e["task"] == task for e in self.episodes)

    def drop_and_renumber(self, kept: list[int]) -> list[dict]:
        """Keep the episodes at these indices (renumbered 0..), queue the others' trials to be
        recorded again; returns the dropped entries."""
        keep = set(kept)
        lost = [e for e in self.episodes if e["episode_index"] not in keep]
        self.episodes = [dict(self.episodes[old], episode_index=i) for i, old in enumerate(kept)]
        self.redo += [{"task": e["task"], "trial": e["trial"]} for e in lost]
        self.pending = None
        return lost


def _repair_damage(root: Path, prog: _Progress) -> list[dict]:
    """Repair damaged files before continuing (see the module docstring); the dropped episodes."""
    from robopolicy.data.repair import apply_repair, plan_repair

    plan = plan_repair(root)
    if not plan.needed:
        return []
    print(plan.describe())
    lost = prog.drop_and_renumber(plan.kept)
    for e in lost:
        e["reason"] = plan.dropped[e["episode_index"]]
    apply_repair(plan, extra_files={RECORDING_PATH: prog.document()})
    prog.load(len(plan.kept))
    print(
        f"{root}: repaired: {len(plan.kept)} episodes kept"
        + (f", {len(plan.rebuilt)} with rebuilt metadata" if plan.rebuilt else "")
        + (
            f"; dropped {len(lost)}, recording their trials again: "
            + ", ".join(f"{e['task']} trial {e['trial']}" for e in lost)
            if lost
            else ""
        )
    )
    return [{"task": e["task"], "trial": e["trial"], "reason": e["reason"]} for e in lost]


def recording_after_repair(root: Path, committed: int, kept: list[int]) -> dict:
    """The recording file of ``root`` after a repair keeps the episodes ``kept`` (for the repair
    command: the dropped trials are then recorded again by the next robopolicy-record run)."""
    prog = _Progress(Path(root), {})
    prog.load(committed)
    d = prog._read()
    prog.config, prog.requested = d.get("config", {}), d.get("episodes_requested")
    prog.drop_and_renumber(kept)
    return prog.document()


def record_command(root: str | Path) -> str | None:
    """The robopolicy-record command that continues (and repairs) the dataset at ``root``, from its
    recording file; None if robopolicy-record did not make it (or made it with a custom rollout)."""
    import shlex
    from collections import Counter

    try:
        d = layout.read_json(Path(root) / RECORDING_PATH)
        c = d["config"]
        if "rollout" in c:
            return None
        n = d.get("episodes_requested") or max(Counter(e["task"] for e in d["episodes"]).values(), default=0)
        parts = [f"env={c['suite']}", f"obs={c['obs']}", f"episodes={int(n)}", f"output={root}"]
        defaults = inspect.signature(record_dataset).parameters
        for key in ("image_size", "keep_failed", "use_videos", "seed_split", "stop_on_success", "post_success_steps"):
            if key in c and c[key] != defaults[key].default:
                v = c[key]
                parts.append(f"{key}={str(v).lower() if isinstance(v, bool) else v}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return "robopolicy-record " + " ".join(shlex.quote(p) for p in parts)


def _same_setting(recorded: Any, now: Any) -> bool:
    """A recording's saved setting equals the current one; a field added to a spec after the
    recording was made (absent there) matches when it is None now (older recordings can resume)."""
    if isinstance(recorded, dict) and isinstance(now, dict):
        return set(recorded) <= set(now) and all(
            _same_setting(recorded[k], v) if k in recorded else v is None for k, v in now.items())
    return recorded == now


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
    spec: RolloutSpec | None = None,
    episode_fn: Callable[[Any, str, int], EpisodeResult] = run_episode,
) -> RecordSummary:
    """Record ``episodes`` expert episodes per task of ``suite_name`` into ``output`` (see module doc).

    ``num_workers=0`` rolls out in this process. ``writer_options`` go to
    ``LeRobotDatasetWriter.create`` (e.g. ``video=VideoEncoding(...)``, file size limits).
    ``spec`` / ``episode_fn``: another rollout (a picklable ``RolloutSpec`` subclass and a
    module-level ``fn(spec, task, trial) -> EpisodeResult``, e.g. the world model's noisy-expert
    play data); the spec's suite, obs, image size and split must match the arguments above, and
    its fields are saved with the recording so a resumed run uses the same ones.
    """
    from robopolicy.data.writer import LeRobotDatasetWriter
    from robopolicy.progress import progress_bar

    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    if seed_split not in ("train", "eval"):
        raise ValueError(f"seed_split must be 'train' or 'eval', got {seed_split!r}")
    root = Path(output)
    custom = spec is not None
    if spec is None:
        spec = RolloutSpec(
            suite_name, obs, int(image_size), seed_split, stop_on_success, int(post_success_steps), suite_factory
        )
    elif (spec.suite_name, spec.obs, spec.image_size, spec.seed_split) != (suite_name, obs, int(image_size), seed_split):
        raise ValueError(
            f"record_dataset: spec is for {(spec.suite_name, spec.obs, spec.image_size, spec.seed_split)}, the "
            f"arguments ask for {(suite_name, obs, int(image_size), seed_split)} (suite, obs, image_size, seed_split)"
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
    if custom:
        rollout = {"type": type(spec).__qualname__, **asdict(spec)}
        rollout.pop("suite_factory")
        config["rollout"] = json.loads(json.dumps(rollout))  # tuples as lists, as read back on resume
        config["stop_on_success"], config["post_success_steps"] = spec.stop_on_success, spec.post_success_steps
    from robopolicy.data.metadata import read_info
    from robopolicy.data.repair import finish_interrupted_repair

    info_path = root / layout.INFO_PATH
    prog = _Progress(root, config)
    finish_interrupted_repair(root)
    prog.load(int(read_info(root)["total_episodes"]) if info_path.exists() else 0)
    prog.requested = int(episodes)
    dropped = _repair_damage(root, prog) if info_path.exists() else []
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

    redo = [(r["task"], r["trial"]) for r in prog.redo if r["task"] in need]

    def submit() -> None:
        while len(pending) < window:
            # Trials whose episodes a repair dropped come first, then new trials.
            again = next(((t, n) for t, n in redo if prog.count(t) + inflight[t] < need[t]), None)
            if again is not None:
                redo.remove(again)
                t, trial = again
            else:
                for t in tasks:
                    if prog.count(t) + inflight[t] < need[t] and next_trial[t] < cap[t]:
                        break
                else:
                    return
                trial = next_trial[t]
                next_trial[t] += 1
            inflight[t] += 1
            if pool is not None:
                fut = pool.apply_async(episode_fn, (spec, t, trial))
                pending.append((t, trial, fut.get))
            else:
                pending.append((t, trial, lambda t=t, trial=trial: episode_fn(spec, t, trial)))

    already = sum(min(prog.count(t), need[t]) for t in tasks)
    bar = progress_bar(
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
            prog.redo = [r for r in prog.redo if (r["task"], r["trial"]) != (t, trial)]
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
        dropped=dropped,
    )


def summary_dict(s: RecordSummary) -> dict:
    d = asdict(s)
    d["root"] = str(s.root)
    return d
