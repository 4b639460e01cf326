"""Offscreen camera frames from a MuJoCo model with the fast software-rendering settings.

Mesa's llvmpipe renders ~50x faster with shadows, reflections and multisampling off (see
SIM-NOTES), so every suite renders through this one class rather than a simulator's own renderer.
The GL backend is fixed when mujoco is first imported: ``envs/__init__`` sets ``MUJOCO_GL=egl``
unless set, which only helps if ``envs`` is imported before ``mujoco``.
"""

from __future__ import annotations

from typing import Callable

import mujoco
import numpy as np

# Image fix-ups per camera: some cameras are defined with their up axis pointing down.
Orient = Callable[[np.ndarray], np.ndarray]


def rotate_180(img: np.ndarray) -> np.ndarray:
    """A camera rolled by 180 degrees: flipping rows *and* columns gives the true view (a row flip
    alone would give its mirror image)."""
    return img[::-1, ::-1]


class CameraRenderer:
    """Renders RGB uint8 frames (H, W, 3) of named cameras of one model at one size."""

    def __init__(self, model: mujoco.MjModel, height: int, width: int,
                 orient: dict[str, Orient] | None = None):
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        # offsamples and the offscreen buffer size are read when the GL context is created.
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
        self._model = model
        self._renderer: mujoco.Renderer | None = mujoco.Renderer(model, height=height, width=width)
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
        self._orient = orient or {}
        self.height, self.width = height, width

    def camera_names(self) -> list[str]:
        return [self._model.camera(i).name for i in range(self._model.ncam)]

    def render(self, data: mujoco.MjData, camera: str) -> np.ndarray:
        if self._renderer is None:
            raise RuntimeError("render() called on a closed CameraRenderer")
        if mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise ValueError(f"camera {camera!r} is not in the model; cameras: {self.camera_names()}")
        self._renderer.update_scene(data, camera=camera)
        img = self._renderer.render()
        fix = self._orient.get(camera)
        if fix is not None:
            img = fix(img)
        return np.ascontiguousarray(img)

    def close(self) -> None:
        # Free the GL context now: left to the garbage collector, it can be released while a
        # newer env's context is current and that env's frames turn black (SIM-NOTES).
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: GL may already be gone
            pass
