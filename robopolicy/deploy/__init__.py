"""Running a policy in a control loop, shared by the evaluator and the robot: where chunks come
from (``ActionSource``: a local ``PolicySource`` or a remote ``PolicyClient``), how they become
one action per step (``ChunkScheduler``), and the robot side (``ControlLoop``, ``SafetyLayer``,
``Robot``/``SimRobot``, ``TimingLog``) and the policy server (``PolicyServer``).

Names are imported lazily (PEP 562): ``robopolicy.deploy.client`` must import on a robot computer
without torch, and importing it runs this file first.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ActionSource": "action_source",
    "PolicySource": "action_source",
    "Chunk": "chunk",
    "ObsSpec": "obs_spec",
    "AsyncScheduler": "scheduler",
    "ChunkScheduler": "scheduler",
    "SyncScheduler": "scheduler",
    "TemporalEnsembleScheduler": "scheduler",
    "make_scheduler": "scheduler",
    "PolicyClient": "client",
    "ServerUnavailable": "client",
    "PolicyServer": "server",
    "RealClock": "clock",
    "SimClock": "clock",
    "Robot": "robot",
    "RobotObservation": "robot",
    "SimRobot": "robot",
    "SafetyConfig": "safety",
    "SafetyLayer": "safety",
    "EmergencyStop": "safety",
    "TimingLog": "timing",
    "InferenceWorker": "worker",
    "ControlLoop": "loop",
    "LoopConfig": "loop",
    "EpisodeResult": "loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'robopolicy.deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"robopolicy.deploy.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
