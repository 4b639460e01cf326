"""Per-episode RNG streams for a policy's sampling noise (diffusion noise, energy-descent noise,
token sampling), so that an episode's actions depend only on (seed, its initial state) and not on
how many envs share its batch, which episodes ran before it, or which path ran it: the
evaluator with any ``n_envs`` and ``robopolicy-deploy clock=sim`` draw the same noise.

Policies draw from torch's global generators; a stream is a saved generator state that is swapped
in around one env's policy call and saved back after it (the caller's RNG state is untouched).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch


def episode_noise_seed(seed: int, reset_seed: int) -> int:
    """The noise seed of the episode whose env was reset with ``reset_seed``, under run seed ``seed``
    (both ints >= 0): the one rule the evaluator and the deploy job share."""
    if int(seed) < 0 or int(reset_seed) < 0:
        raise ValueError(f"episode_noise_seed: seed and reset_seed must be >= 0, got {seed}, {reset_seed}")
    return int(np.random.SeedSequence([int(seed), int(reset_seed)]).generate_state(1)[0])


class NoiseStreams:
    """One RNG stream per env of a batch, on the CPU and (for a CUDA policy) its device."""

    def __init__(self, seeds: Sequence[int], device: torch.device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._cpu: list[torch.Tensor] = []
        self._dev: list[torch.Tensor] = []
        for s in seeds:
            self._cpu.append(torch.Generator().manual_seed(int(s)).get_state())
            if self.cuda:
                self._dev.append(torch.Generator(device=self.device).manual_seed(int(s)).get_state())

    def __len__(self) -> int:
        return len(self._cpu)

    @contextmanager
    def use(self, i: int) -> Iterator[None]:
        """Torch's global generators run env ``i``'s stream inside the block; the stream advances
        by what was drawn, and the global state is restored afterwards."""
        devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] if self.cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self._cpu[i])
            if self.cuda:
                torch.cuda.set_rng_state(self._dev[i], devices[0])
            yield
            self._cpu[i] = torch.get_rng_state()
            if self.cuda:
                self._dev[i] = torch.cuda.get_rng_state(devices[0])
