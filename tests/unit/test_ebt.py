"""EBT-Policy: energy descent (fixed and adaptive), warm start, second-order training graph,
threshold calibration (running, and on the EMA weights the trainer saves), and that a tiny model
learns a fixed obs -> action mapping."""

import math

import numpy as np
import pytest
import torch

from robopolicy.policies.ebt import EBTConfig, EBTPolicy
from robopolicy.samplers.energy import descend, unroll
from robopolicy.types import FeatureSpec, PolicyState

S, A = 6, 3
FEATURES = FeatureSpec(action_dim=A, state_dim=S)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models: a second thread only adds synchronization (and stalls on a busy machine).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _stats():
    def entry(n, lo, hi):
        lo, hi = np.full(n, lo, np.float32), np.full(n, hi, np.float32)
        return {"min": lo, "max": hi, "mean": (lo + hi) / 2, "std": (hi - lo) / 4, "q01": lo, "q99": hi}

    return {"observation.state": entry(S, -1.0, 1.0), "action": entry(A, -1.0, 1.0)}


def _policy(**overrides) -> EBTPolicy:
    torch.manual_seed(0)
    cfg = EBTConfig.tiny()
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return EBTPolicy(cfg, FEATURES, _stats())


def _quadratic(center: torch.Tensor, curvature: torch.Tensor):
    """E(y) = 0.5 * c_b * ||y - center||^2 per element b."""
    return lambda y: 0.5 * curvature * ((y - center) ** 2).sum(dim=(1, 2))


# --- the generic descent ----------------------------------------------------------------------
def test_fixed_descent_follows_the_quadratic_contraction():
    center = torch.randn(2, 4, 3)
    y0 = torch.randn(2, 4, 3)
    res = descend(_quadratic(center, torch.ones(2)), y0, step_size=0.3, steps=3)
    # Each step scales the distance to the minimum by (1 - a c) = 0.7, the energy by 0.49.
    assert res.steps.tolist() == [3, 3]
    assert torch.allclose(res.y, center + 0.7**3 * (y0 - center), atol=1e-5)
    e0 = 0.5 * ((y0 - center) ** 2).sum(dim=(1, 2))
    assert torch.allclose(res.history, torch.stack([e0 * 0.49**k for k in range(4)]), rtol=1e-4)
    assert torch.allclose(res.energy, res.history[-1])


def test_adaptive_stop_fewer_steps_on_plateau_more_while_above_threshold():
    center, y0 = torch.zeros(3, 4, 3), torch.ones(3, 4, 3)
    # Element 0: a step of 1 on curvature 1 lands on the minimum -> the next step moves nothing.
    # Elements 1, 2: curvature 0.2 -> each step moves the chunk by 20% of its distance to the minimum.
    energy = _quadratic(center, torch.tensor([1.0, 0.2, 0.2]))
    kw = dict(step_size=1.0, steps=3, max_steps=6, tol=0.01)
    high = descend(energy, y0, threshold=-1.0, **kw)  # every energy counts as high
    assert high.steps.tolist() == [2, 6, 6]  # plateau stops early; high energy runs to max
    low = descend(energy, y0, threshold=math.inf, **kw)  # every energy counts as low
    assert low.steps.tolist() == [2, 3, 3]  # stop at the nominal steps
    thr = float(0.5 * 0.2 * 12 * 0.8 ** (2 * 4))  # element energy after 4 steps
    mixed = descend(energy, y0, threshold=thr * 1.001, **kw)
    assert mixed.steps.tolist() == [2, 4, 4]
    # Stopped elements keep their iterate and energy while the others go on.
    assert torch.allclose(high.y[0], center[0]) and high.energy[0] == 0
    assert torch.allclose(high.y[1], 0.8**6 * y0[1], atol=1e-6)


def test_convergence_is_judged_by_the_step_not_by_the_energy_offset():
    # The same landscape shifted by a large constant: a relative energy tolerance would call it
    # flat at once; the step length sees the chunk still moving and descends the same way.
    center, y0 = torch.zeros(1, 4, 3), torch.ones(1, 4, 3)
    base, shifted = _quadratic(center, torch.tensor([0.5])), lambda y: _quadratic(center, torch.tensor([0.5]))(y) - 1e4
    kw = dict(step_size=1.0, steps=2, max_steps=8, tol=0.01, threshold=-math.inf)
    a, b = descend(base, y0, **kw), descend(shifted, y0, **kw)
    # each step halves the distance: moves 0.5, 0.25, ..., 2^-k <= 0.01 first after step 7
    assert a.steps.tolist() == b.steps.tolist() == [7]
    assert torch.allclose(a.y, b.y) and torch.allclose(a.y, 0.5**7 * y0)


def test_descend_takes_gradients_under_inference_mode():
    center = torch.randn(1, 4, 3)
    with torch.inference_mode():
        y0 = torch.randn(1, 4, 3)
        res = descend(_quadratic(center, torch.ones(1)), y0, step_size=0.5, steps=2)
    assert res.energy[0] < 0.5 * ((y0 - center) ** 2).sum()


# --- the policy's energy ----------------------------------------------------------------------
def _obs(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"observation.state": torch.rand(b, 2, S, generator=g) * 2 - 1}


def _batch(b=4, seed=0):
    batch = _obs(b, seed)
    batch["action"] = torch.rand(b, 8, A, generator=torch.Generator().manual_seed(seed + 1)) * 2 - 1
    return batch


def test_unroll_graph_goes_through_the_energy_gradient():
    """The loss on the iterates reaches the transformer only through dE/dy (second order): with
    the gradient detached (create_graph=False) the same forward gives no transformer gradient."""
    policy = _policy()
    batch = _batch()
    target = policy.tokenizer.encode(batch["action"])

    def grads(create_graph: bool, detach_between: bool = False):
        policy.zero_grad()
        tokens, _ = policy.observation_tokens(batch)
        torch.manual_seed(3)
        y0 = torch.randn_like(target)
        out = unroll(policy.energy_fn(tokens), y0, policy.step_size(), 3,
                     create_graph=create_graph, detach_between_steps=detach_between)
        loss = torch.stack([((y - target) ** 2).mean() for y in out.iterates]).mean()
        loss.backward()
        return float(loss.detach()), {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}

    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        loss_2nd, g_2nd = grads(True)
        loss_1st, g_1st = grads(False)
        _, g_trunc = grads(True, detach_between=True)
    assert loss_2nd == pytest.approx(loss_1st)  # same forward
    w = "transformer.blocks.0.mlp.0.weight"
    assert g_2nd[w].abs().sum() > 0 and (w not in g_1st or g_1st[w].abs().sum() == 0)
    assert "log_step" in g_1st and g_1st["log_step"] != 0  # the step size still learns
    # Cutting the graph between steps changes the gradient too (the unroll reaches back).
    assert not torch.allclose(g_2nd[w], g_trunc[w])


def test_loss_calibrates_the_threshold_only_in_training():
    policy = _policy()
    assert math.isinf(float(policy.energy_threshold))
    policy.train()
    _, info = policy.loss(_batch())
    first = float(policy.energy_threshold)
    assert math.isfinite(first) and info["energy_threshold"] == first
    policy.loss(_batch(seed=5))
    second = float(policy.energy_threshold)
    assert second != first and int(policy.energy_calibrations) == 2
    policy.eval()
    policy.loss(_batch(seed=7))
    assert float(policy.energy_threshold) == second
    assert "energy_threshold" in policy.state_dict()  # saved with the checkpoint


def test_calibrate_takes_the_quantile_of_the_weights_own_final_energies():
    policy = _policy().eval()
    batches = [_batch(8, seed=1), _batch(8, seed=2)]
    torch.manual_seed(123)
    before = torch.get_rng_state()
    policy.calibrate(batches)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random stream is untouched
    thr = float(policy.energy_threshold)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        e = torch.cat([policy.final_energies(b) for b in batches])
    assert e.shape == (16,)
    assert thr == pytest.approx(float(torch.quantile(e, policy.config.energy_quantile)), rel=1e-6)
    policy.calibrate(batches)
    assert float(policy.energy_threshold) == thr  # repeatable: seeded
    with pytest.raises(ValueError, match="at least one batch"):
        policy.calibrate([])
    with pytest.raises(ValueError, match="calibration_batches"):
        EBTConfig(calibration_batches=-1)


class _Windows(torch.utils.data.Dataset):
    """Training samples in the dataset's layout: stacked states and an action chunk."""

    def __init__(self, n=48):
        g = torch.Generator().manual_seed(0)
        self.state = torch.rand(n, 2, S, generator=g) * 2 - 1
        self.action = torch.tanh(self.state[:, -1:, :A]).expand(n, 8, A).clone()

    def __len__(self):
        return len(self.state)

    def __getitem__(self, i):
        return {"observation.state": self.state[i], "action": self.action[i],
                "action_is_pad": torch.zeros(8, dtype=torch.bool)}


def test_trainer_saves_the_ema_weights_own_threshold(tmp_path):
    """EMAModel averages parameters only: without calibrating the EMA copy, ema.safetensors would
    carry the live weights' running quantile, a threshold for other energies."""
    from safetensors.torch import load_file

    from robopolicy.train.config import TrainConfig
    from robopolicy.train.trainer import Trainer

    policy = _policy()
    cfg = TrainConfig(policy=policy.config, device="cpu", steps=6, batch_size=16, lr=3e-3, warmup_steps=0,
                      save_every=6, log_every=6, num_workers=0)
    trainer = Trainer(policy, _Windows(), cfg, tmp_path / "run", progress=False)
    returned = trainer.fit()
    step_dir = tmp_path / "run" / "step_00000006"
    ema_state, live_state = load_file(str(step_dir / "ema.safetensors")), load_file(str(step_dir / "model.safetensors"))

    ema = _policy()
    ema.load_state_dict(ema_state)
    live = _policy()
    live.load_state_dict({**ema_state, **live_state})  # live weights (normalizer buffers are shared)
    batches = trainer._calibration_batches(policy.config.calibration_batches)
    assert len(batches) == 4 and batches[0]["action"].shape == (16, 8, A)

    def own_threshold(p):
        p.eval().calibrate(batches)
        return float(p.energy_threshold)

    saved = float(ema_state["energy_threshold"])
    assert saved == pytest.approx(own_threshold(ema), rel=1e-6)
    assert float(returned.energy_threshold) == pytest.approx(saved, rel=1e-6)  # what run.py evaluates
    assert not torch.equal(ema_state["energy_head.weight"], live_state["energy_head.weight"])
    assert saved != pytest.approx(own_threshold(live), rel=1e-3)
    # the live checkpoint keeps the live weights' running quantile, updated by every training step
    assert int(live_state["energy_calibrations"]) == 6 and torch.isfinite(live_state["energy_threshold"])


def test_warm_start_shifts_the_previous_chunk():
    policy = _policy()  # horizon 8, n_action_steps 4
    prev = torch.arange(2 * 8 * A, dtype=torch.float32).view(2, 8, A)
    y0 = policy._start(PolicyState(tensors={"chunk": prev}), 2, prev)
    assert torch.equal(y0[:, :4], prev[:, 4:])
    assert torch.equal(y0[:, 4:], prev[:, -1:].expand(-1, 4, -1))  # the last action held
    with pytest.raises(ValueError, match="init_state"):
        policy._start(PolicyState(tensors={"chunk": prev}), 3, prev)
    policy.config.warm_start = False
    torch.manual_seed(1)
    cold = policy._start(PolicyState(tensors={"chunk": prev}), 2, prev)
    assert not torch.equal(cold[:, :4], prev[:, 4:])


def test_act_reports_uncertainty_and_steps_and_carries_the_chunk():
    policy = _policy().eval()
    obs = _obs(3)
    with torch.inference_mode():
        actions, state = policy.act(obs, policy.init_state(3))
        actions2, state2 = policy.act(obs, state)
    assert actions.shape == (3, 4, A)
    unc = state.info["uncertainty"]
    assert unc.shape == (3,) and torch.isfinite(unc).all()
    assert state.info["energy_steps"] == int(state.info["compute_steps"].max())
    assert 1 <= state.info["energy_steps"] <= policy.config.max_inference_steps
    assert state.tensors["chunk"].shape == (3, 8, A) and state2.step == 2
    # The returned uncertainty is the energy of the chunk the policy keeps.
    with torch.no_grad():
        tokens, _ = policy.observation_tokens(obs)
        e = policy.energy(tokens, state.tensors["chunk"])
    assert torch.allclose(e, unc, atol=1e-4)


def test_trained_descent_lowers_the_energy():
    policy = _policy()
    opt = torch.optim.Adam(policy.parameters(), lr=2e-3)
    for i in range(30):
        loss, _ = policy.loss(_batch(16, seed=i))
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    with torch.inference_mode():
        res = policy.descend(_obs(8, seed=99), steps=4, adaptive=False)
    assert (res.history[-1] < res.history[0]).all()
    assert (res.history[1:] <= res.history[:-1] + 1e-4).float().mean() > 0.9


@pytest.mark.slow
def test_tiny_model_fits_a_fixed_obs_to_action_mapping():
    """A smooth, fixed map state -> chunk (each action a function of the state and the slot)."""
    policy = _policy()
    g = torch.Generator().manual_seed(0)
    w = torch.randn(S, A, generator=g)
    slots = torch.linspace(0.5, 1.0, 8).view(1, 8, 1)

    def batch(b, seed):
        obs = _obs(b, seed)
        obs["action"] = torch.tanh(obs["observation.state"][:, -1] @ w).unsqueeze(1) * slots
        return obs

    opt = torch.optim.AdamW(policy.parameters(), lr=2e-3)
    losses = []
    for i in range(300):
        loss, info = policy.loss(batch(64, i))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(info["mse_last_step"])
    first, last = np.mean(losses[:10]), np.mean(losses[-20:])
    assert last < first / 10, (first, last)
    policy.eval()
    test = batch(32, 10_000)
    with torch.inference_mode():
        actions, _ = policy.act(test, policy.init_state(32))
    assert torch.mean((actions - test["action"][:, 1:5]) ** 2) < 0.02
