"""Running a policy in a control loop, shared by the evaluator and the robot: where chunks come
from (``ActionSource``) and how they become one action per step (``ChunkScheduler``)."""

from robopolicy.deploy.action_source import ActionSource, Chunk, PolicySource
from robopolicy.deploy.scheduler import (
    AsyncScheduler,
    ChunkScheduler,
    SyncScheduler,
    TemporalEnsembleScheduler,
    make_scheduler,
)

__all__ = [
    "ActionSource",
    "AsyncScheduler",
    "Chunk",
    "ChunkScheduler",
    "PolicySource",
    "SyncScheduler",
    "TemporalEnsembleScheduler",
    "make_scheduler",
]
