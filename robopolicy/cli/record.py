"""``robopolicy-record``: record scripted-expert demonstrations into a LeRobotDataset v3.0.

    robopolicy-record env=metaworld/mt1/push-v3 obs=image episodes=50 output=datasets/push

Re-running the same command after an interruption continues the dataset where it stopped;
on a damaged dataset it first repairs it (robopolicy/data/repair.py) and records the
dropped episodes again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402

from robopolicy.cli.configstore import CONFIG_DIR  # noqa: E402
from robopolicy.cli.errors import config_errors  # noqa: E402
from robopolicy.cli.help import register_help  # noqa: E402
from robopolicy.config_utils import check_suite, to_object  # noqa: E402

USAGE = """\
robopolicy-record env=<suite> [obs=state|image] [episodes=50] [output=<folder>] [key=value ...]:
record scripted-expert demonstrations into a LeRobotDataset v3.0 (re-run to continue one)."""


@dataclass
class RecordConfig:
    """Which suite to record, how many episodes, and where the dataset goes."""

    env: str = "pushblock"
    """Task suite (envs.make_suite): pushblock | metaworld/mt1/<task> | metaworld/mt10 | robosuite/<task> ..."""
    obs: str = "state"
    """Observation modality: state | image (image = state + the suite's cameras)."""
    episodes: int = 50
    """Successful episodes to record per task (with keep_failed: trials per task)."""
    output: Optional[str] = None
    """Dataset folder; default datasets/<env>_<obs>. An existing recording there is continued."""
    image_size: int = 84
    """Square camera resolution when obs=image."""
    keep_failed: bool = False
    """Keep episodes whose expert failed (then exactly the first `episodes` trials are kept)."""
    num_workers: int = 2
    """Worker processes rolling out episodes (0 = in this process)."""
    use_videos: bool = True
    """Store cameras as mp4 (AV1) videos; false stores PNG images inside the parquet files."""
    seed_split: str = "train"
    """Initial states to draw trials from: train | eval (the evaluator uses eval)."""
    stop_on_success: bool = True
    """End an episode shortly after the task first reports success."""
    post_success_steps: int = 4
    """Frames kept after the first success when stop_on_success is on."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self):
        if self.obs not in ("state", "image"):
            raise ValueError(f"obs must be 'state' or 'image', got {self.obs!r}")
        check_suite(self.env)


def register_configs() -> None:
    ConfigStore.instance().store(name="record_schema", node=RecordConfig)
    register_help("robopolicy-record", USAGE, RecordConfig)


@hydra.main(config_path=CONFIG_DIR, config_name="record", version_base="1.3")
def _main(cfg) -> None:
    from robopolicy.data.record import record_dataset
    from robopolicy.paths import default_dataset_path

    with config_errors():
        c: RecordConfig = to_object(cfg)
    output = c.output or default_dataset_path(c.env, c.obs)
    s = record_dataset(
        c.env,
        output,
        c.episodes,
        obs=c.obs,
        image_size=c.image_size,
        keep_failed=c.keep_failed,
        num_workers=c.num_workers,
        use_videos=c.use_videos,
        seed_split=c.seed_split,
        progress=c.progress,
        stop_on_success=c.stop_on_success,
        post_success_steps=c.post_success_steps,
    )
    print(
        f"{s.root}: {s.episodes} episodes, {s.frames} frames ({s.new_episodes} new from {s.attempts} "
        f"rollouts, {s.failed} failed); per task: {s.per_task}"
    )


def main() -> None:
    register_configs()
    _main()


if __name__ == "__main__":
    main()
