"""Simulated task suites (our PushBlock, Meta-World v3, robosuite) with scripted experts.

    from envs import make_suite, list_suites
    suite = make_suite("metaworld/mt1/push-v3", obs="image", image_size=84)
    env = suite.make_env("push-v3")
    obs, info = env.reset(seed=suite.trial_seed("push-v3", 0, "eval"))

Simulator packages are imported only when a suite of theirs is made.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

from typing import Any, Callable

from envs.base import IMAGE_PREFIX, STATE_KEY, Expert, SimEnv, Suite, trial_seed

__all__ = ["make_suite", "list_suites", "Suite", "SimEnv", "Expert", "trial_seed",
           "STATE_KEY", "IMAGE_PREFIX"]


def _pushblock(rest: str, **kw: Any) -> Suite:
    from envs.pushblock import PushBlockSuite

    if rest:
        raise ValueError(f"unknown suite 'pushblock/{rest}'; the pushblock suite has no variants")
    return PushBlockSuite(**kw)


def _metaworld(rest: str, **kw: Any) -> Suite:
    from envs.metaworld_suite import make_metaworld_suite

    return make_metaworld_suite(rest, **kw)


def _robosuite(rest: str, **kw: Any) -> Suite:
    from envs.robosuite_suite import make_robosuite_suite

    return make_robosuite_suite(rest, **kw)


# family prefix -> builder(rest of the name, **options)
_FAMILIES: dict[str, Callable[..., Suite]] = {
    "pushblock": _pushblock,
    "metaworld": _metaworld,
    "robosuite": _robosuite,
}


def make_suite(name: str, obs: str = "state", image_size: int = 84,
               cameras: list[str] | None = None) -> Suite:
    """Build a suite by name (see ``list_suites()``).

    obs: 'state' (``observation.state`` only) or 'image' (state plus one uint8 image per camera).
    image_size: height = width of camera images. cameras: override the suite's default cameras.
    """
    family, _, rest = name.partition("/")
    if family not in _FAMILIES:
        raise ValueError(f"unknown suite {name!r}; families: {sorted(_FAMILIES)} "
                         f"(list_suites() gives every name)")
    return _FAMILIES[family](rest, obs=obs, image_size=image_size, cameras=cameras)


def list_suites() -> list[str]:
    """Every suite name ``make_suite`` accepts."""
    from envs.metaworld_suite import metaworld_suite_names
    from envs.robosuite_suite import robosuite_suite_names

    return ["pushblock", *metaworld_suite_names(), *robosuite_suite_names()]
