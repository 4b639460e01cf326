"""The state world model: data windows, EDM pieces, learning a known linear system, heads, the
imagined vector env, checkpoints, and play-data recording."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from robopolicy.eval.stats import auroc
from robopolicy.types import ACTION_KEY, ACTION_PAD_KEY, STATE_KEY
from robopolicy.world_model import edm
from robopolicy.world_model.config import EDMConfig, StateWorldModelConfig
from robopolicy.world_model.data import NEXT_STATE_KEY, NEXT_STATE_PAD_KEY, Episodes, TransitionWindows
from robopolicy.world_model.env import WorldModelSuite
from robopolicy.world_model.play import DONE_KEY, REWARD_KEY, SUCCESS_KEY
from robopolicy.world_model.state_model import StateWorldModel

S, A = 3, 2
A_MAT = np.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.95]], dtype=np.float32)
B_MAT = np.array([[0.3, 0.0], [0.0, 0.3], [0.2, -0.2]], dtype=np.float32)


def linear_next(s: np.ndarray, a: np.ndarray) -> np.ndarray:
    return (s @ A_MAT.T + a @ B_MAT.T).astype(np.float32)


def linear_success(s: np.ndarray, a: np.ndarray) -> np.ndarray:
    return linear_next(s, a)[..., 0] > 0.3


def _stats(x: np.ndarray) -> dict:
    x = x.reshape(len(x), -1)
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0) + 1e-6}


def linear_episodes(n_eps: int = 40, length: int = 20, seed: int = 0) -> Episodes:
    rng = np.random.default_rng(seed)
    states, actions, bounds = [], [], []
    for e in range(n_eps):
        s = rng.uniform(-1, 1, S).astype(np.float32)
        for _ in range(length):
            a = rng.uniform(-1, 1, A).astype(np.float32)
            states.append(s)
            actions.append(a)
            s = linear_next(s, a)
        bounds.append((e * length, (e + 1) * length))
    st, ac = np.stack(states), np.stack(actions)
    succ = linear_success(st, ac)
    rew = -np.abs(linear_next(st, ac)[:, 0] - 0.3).astype(np.float32)
    done = np.zeros(len(st), bool)
    done[np.array(bounds)[:, 1] - 1] = True
    stats = {STATE_KEY: _stats(st), ACTION_KEY: _stats(ac), REWARD_KEY: _stats(rew)}
    return Episodes(st, ac, rew, succ, done, np.array(bounds), np.arange(n_eps), stats, fps=10.0)


def small_config(**kw) -> StateWorldModelConfig:
    base = dict(hidden_dim=64, depth=2, noise_embed_dim=16, head_hidden_dim=32, head_depth=1)
    base.update(kw)
    return StateWorldModelConfig(**base)


def _batch(windows: TransitionWindows, idx) -> dict:
    return windows.batch(idx)


def _train(model: StateWorldModel, windows: TransitionWindows, steps: int, seed: int = 0) -> list[float]:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        loss, info = model.loss(_batch(windows, gen.integers(0, len(windows), 128)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(info["dynamics"])
    return losses


@pytest.fixture(scope="module")
def trained():
    """A diffusion model and a regression model trained briefly on the linear system."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: a second thread only adds contention on a shared machine
    torch.manual_seed(0)
    eps = linear_episodes()
    windows = TransitionWindows(eps, n_history=1)
    out = {"episodes": eps}
    for objective in ("diffusion", "regression"):
        model = StateWorldModel.from_episodes(small_config(objective=objective, n_history=1), eps)
        out[objective] = (model, _train(model, windows, 300))
    torch.set_num_threads(threads)
    return out


# --- data ---------------------------------------------------------------------------------------
def test_windows_pad_before_start_and_after_end():
    eps = linear_episodes(n_eps=2, length=5)
    w = TransitionWindows(eps, n_history=3, n_future=2)
    first = w[0]  # frame 0: the state repeats before the start, past actions are padding
    assert torch.equal(first[STATE_KEY], torch.from_numpy(eps.states[[0, 0, 0]]))
    assert first[ACTION_PAD_KEY].tolist() == [True, True, False, False]
    assert torch.equal(first[NEXT_STATE_KEY], torch.from_numpy(eps.states[[1, 2]]))
    last = w[4]  # the episode's last frame has no recorded next state
    assert last[NEXT_STATE_PAD_KEY].tolist() == [True, True]
    assert last[ACTION_PAD_KEY].tolist() == [False, False, False, True]
    assert float(last[DONE_KEY]) == 1.0
    nxt = w[5]  # the next episode does not see the previous one
    assert torch.equal(nxt[STATE_KEY], torch.from_numpy(eps.states[[5, 5, 5]]))
    stacked = w.batch([0, 4, 5])  # the batched path equals collating the items
    collated = torch.utils.data.default_collate([w[0], w[4], w[5]])
    assert stacked.keys() == collated.keys() and all(torch.equal(stacked[k], collated[k]) for k in stacked)


def test_loss_shapes_and_gradients_reach_every_parameter():
    eps = linear_episodes(n_eps=3)
    model = StateWorldModel.from_episodes(small_config(n_history=2, n_future=3), eps)
    batch = _batch(TransitionWindows(eps, 2, 3), range(0, 60, 3))
    loss, info = model.loss(batch)
    assert torch.isfinite(loss) and set(info) == {"dynamics", "success_bce", "reward_mse", "done_bce"}
    # zero-initialised output and FiLM layers block the gradient of what lies before them until
    # they moved (output layer first, then FiLM): after two optimizer steps every parameter gets one
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss = model.loss(batch)[0]
    loss.backward()
    without = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []


def test_bad_batch_shape_is_named():
    eps = linear_episodes(n_eps=2)
    model = StateWorldModel.from_episodes(small_config(n_history=2), eps)
    batch = _batch(TransitionWindows(eps, 1), range(4))
    with pytest.raises(ValueError, match="n_history=2"):
        model.loss(batch)


def test_step_shapes_and_history_roll():
    eps = linear_episodes(n_eps=2)
    model = StateWorldModel.from_episodes(small_config(n_history=3), eps)
    r = model.init_rollout({STATE_KEY: torch.from_numpy(eps.states[:4])})
    assert r.tensors["states"].shape == (4, 3, S) and r.tensors["actions"].shape == (4, 2, A)
    out, r2 = model.step(r, torch.zeros(4, A))
    assert out.obs[STATE_KEY].shape == (4, S) and out.reward.shape == out.success.shape == out.done.shape == (4,)
    assert r2.step == 1 and torch.equal(r2.tensors["states"][:, :2], r.tensors["states"][:, 1:])
    with pytest.raises(ValueError, match="actions must have shape"):
        model.step(r, torch.zeros(4, A + 1))


# --- EDM ----------------------------------------------------------------------------------------
def test_edm_preconditioning_matches_diffusers():
    from diffusers import EDMEulerScheduler

    sched = EDMEulerScheduler(sigma_data=0.7)
    sigma = torch.tensor([0.01, 0.5, 3.0])
    x, f = torch.randn(3, 4), torch.randn(3, 4)
    c_skip, c_out, c_in, c_noise = edm.coefficients(sigma, 0.7)
    ours = c_skip[:, None] * x + c_out[:, None] * f
    theirs = torch.stack([sched.precondition_outputs(x[i], f[i], sigma[i]) for i in range(3)])
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert torch.allclose(c_in[:, None] * x, torch.stack([sched.precondition_inputs(x[i], sigma[i]) for i in range(3)]))
    assert torch.allclose(c_noise, sched.precondition_noise(sigma))
    sig = edm.karras_sigmas(EDMConfig(num_steps=3))
    assert len(sig) == 4 and sig[0] == pytest.approx(5.0) and sig[-1] == 0.0 and sig == sorted(sig, reverse=True)


def test_sampler_with_the_ideal_denoiser_returns_the_clean_point():
    x0 = torch.tensor([[0.3, -1.2]])
    for sampler in ("euler", "heun"):
        out = edm.sample(lambda x_in, c: torch.zeros_like(x_in), (1, 2), [5.0, 1.0, 0.0], 1.0, sampler)
        assert out.shape == (1, 2)  # F = 0 denoises towards 0 (c_skip shrinks x): finite, shaped
    # a denoiser that knows x0 (F = (x0 - c_skip x) / c_out) lands on it
    def ideal(x_in, c_noise):
        sigma = (4 * c_noise).exp().view(-1, 1)
        c_skip, c_out, c_in, _ = edm.coefficients(sigma, 1.0)
        return (x0 - c_skip * (x_in / c_in)) / c_out
    out = edm.sample(ideal, (1, 2), edm.karras_sigmas(EDMConfig(num_steps=3)), 1.0, "euler")
    assert torch.allclose(out, x0, atol=1e-4)


# --- learning -----------------------------------------------------------------------------------
def _one_step_error(model: StateWorldModel, eps: Episodes, n: int = 256, seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (n, S)).astype(np.float32)
    a = rng.uniform(-1, 1, (n, A)).astype(np.float32)
    r = model.init_rollout({STATE_KEY: torch.from_numpy(s)})
    out, _ = model.step(r, torch.from_numpy(a), generator=torch.Generator().manual_seed(seed))
    return float(np.abs(out.obs[STATE_KEY].numpy() - linear_next(s, a)).mean()), float(np.abs(s - linear_next(s, a)).mean())


def test_diffusion_loss_decreases_and_samples_approach_the_true_next_state(trained):
    model, losses = trained["diffusion"]
    assert np.mean(losses[-30:]) < 0.5 * np.mean(losses[:10])
    err, copy_err = _one_step_error(model, trained["episodes"])
    assert err < 0.25 * copy_err, (err, copy_err)


def test_regression_baseline_learns_the_same_system(trained):
    model, losses = trained["regression"]
    assert np.mean(losses[-30:]) < 0.2 * np.mean(losses[:10])
    err, copy_err = _one_step_error(model, trained["episodes"])
    assert err < 0.25 * copy_err, (err, copy_err)


def test_heads_learn_success_and_reward(trained):
    model, _ = trained["diffusion"]
    rng = np.random.default_rng(3)
    s = rng.uniform(-1, 1, (512, S)).astype(np.float32)
    a = rng.uniform(-1, 1, (512, A)).astype(np.float32)
    out, _ = model.step(model.init_rollout({STATE_KEY: torch.from_numpy(s)}), torch.from_numpy(a))
    assert auroc(out.success.numpy().tolist(), linear_success(s, a).tolist()) > 0.95
    true_reward = -np.abs(linear_next(s, a)[:, 0] - 0.3)
    assert np.corrcoef(out.reward.numpy(), true_reward)[0, 1] > 0.8


# --- the imagined vector env --------------------------------------------------------------------
class LinearEnv(gym.Env):
    """The linear system as a real env (its reset draws the initial state from the seed)."""

    def __init__(self):
        self.observation_space = spaces.Dict({STATE_KEY: spaces.Box(-np.inf, np.inf, (S,), np.float32)})
        self.action_space = spaces.Box(-1, 1, (A,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = self.np_random.uniform(-1, 1, S).astype(np.float32)
        return {STATE_KEY: self.s.copy()}, {"success": False}


class LinearSuite:
    name, tasks, fps = "linear", ["lin"], 10.0

    def instruction(self, task):
        return "drive the first coordinate above 0.3"

    def max_episode_steps(self, task):
        return 7

    def trial_seed(self, task, trial, split):
        return 1000 * (split == "eval") + trial

    def check_task(self, task):
        if task not in self.tasks:
            raise ValueError(f"no task {task!r}")

    def make_env(self, task):
        return LinearEnv()


def test_vector_env_steps_a_batch_reports_head_success_and_truncates(trained):
    model, _ = trained["diffusion"]
    suite = WorldModelSuite(model, LinearSuite())
    vec = suite.make_vector("lin", 5)
    seeds = [suite.trial_seed("lin", i, "eval") for i in range(5)]
    obs, info = vec.reset(seed=seeds)
    real = np.stack([LinearEnv().reset(seed=s)[0][STATE_KEY] for s in seeds])
    assert np.array_equal(obs[STATE_KEY], real) and not info["success"].any()
    a = np.tile(np.array([1.0, 0.0], np.float32), (5, 1))
    for t in range(7):
        obs, reward, term, trunc, info = vec.step(a)
        assert obs[STATE_KEY].shape == (5, S) and reward.shape == (5,) and not term.any()
        assert trunc.all() == (t == 6)
        assert np.array_equal(info["success"], info["success_prob"] > 0.5)
    obs, *_ , trunc, _ = vec.step(a)
    assert trunc.all()  # ends are sticky until reset
    with torch.no_grad():
        model.heads.out.bias[0] = 50.0  # the success head now always fires: so does info["success"]
    try:
        vec.reset(seed=seeds)
        assert vec.step(a)[4]["success"].all()
    finally:
        with torch.no_grad():
            model.heads.out.bias[0] = 0.0


def test_vector_env_resets_from_given_observations_and_is_reproducible(trained):
    model, _ = trained["diffusion"]
    suite = WorldModelSuite(model, LinearSuite())
    vec = suite.make_vector("lin", 3)
    init = np.array([[0.1, 0.2, 0.3], [-0.5, 0.0, 0.5], [0.9, -0.9, 0.0]], np.float32)
    obs, _ = vec.reset(options={"initial_obs": {STATE_KEY: init}})
    assert np.array_equal(obs[STATE_KEY], init)
    a = np.zeros((3, A), np.float32)
    first = vec.step(a)[0][STATE_KEY]
    vec.reset(options={"initial_obs": {STATE_KEY: init}})
    assert np.array_equal(vec.step(a)[0][STATE_KEY], first)
    np.testing.assert_allclose(first, linear_next(init, a), atol=0.15)
    with pytest.raises(ValueError, match="leading axis of 3"):
        vec.reset(options={"initial_obs": {STATE_KEY: init[:2]}})
    with pytest.raises(ValueError, match="trial seeds"):
        vec.reset()
    with pytest.raises(NotImplementedError, match="perturb"):
        vec.call("perturb")


def test_fps_mismatch_is_refused(trained):
    class Fast(LinearSuite):
        fps = 20.0

    with pytest.raises(ValueError, match="fps"):
        WorldModelSuite(trained["diffusion"][0], Fast())


# --- checkpoints --------------------------------------------------------------------------------
def test_checkpoint_round_trip_gives_identical_predictions(trained, tmp_path):
    import robopolicy
    from robopolicy.train.checkpoint import load_policy, save_checkpoint

    model, _ = trained["diffusion"]
    save_checkpoint(tmp_path / "run", 7, model, None, None, {"env": "linear"})
    meta = json.loads((tmp_path / "run" / "step_00000007" / "meta.json").read_text())
    assert meta["kind"] == "world_model" and meta["policy"] == "state"
    loaded = robopolicy.load_world_model(tmp_path / "run")
    s = torch.from_numpy(trained["episodes"].states[:8])
    a = torch.from_numpy(trained["episodes"].actions[:8])
    outs = [m.step(m.init_rollout({STATE_KEY: s}), a, generator=torch.Generator().manual_seed(5))[0]
            for m in (model, loaded)]
    for key in ("reward", "success", "done"):
        assert torch.equal(getattr(outs[0], key), getattr(outs[1], key))
    assert torch.equal(outs[0].obs[STATE_KEY], outs[1].obs[STATE_KEY])
    with pytest.raises(ValueError, match="load_world_model"):
        load_policy(tmp_path / "run")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="objective"):
        StateWorldModelConfig(objective="gan")
    with pytest.raises(ValueError, match="sampler"):
        EDMConfig(sampler="ddpm")
    from robopolicy.world_model.train import WorldModelTrainConfig

    with pytest.raises(ValueError, match="steps=0"):
        WorldModelTrainConfig(steps=0)
    with pytest.raises(ValueError, match="obs='pixels'"):
        WorldModelTrainConfig(obs="pixels")


# --- play data ----------------------------------------------------------------------------------
def test_play_recording_keeps_failures_and_stores_reward_fields(tmp_path):
    from robopolicy.data import LeRobotDataset
    from robopolicy.data.rollout import RolloutSpec, run_episode
    from robopolicy.world_model.data import load_episodes
    from robopolicy.world_model.play import PlaySpec, record_play_dataset

    root = tmp_path / "play"
    s = record_play_dataset("pushblock", root, 4, num_workers=0, progress=False, noise_levels=(0.0, 0.6),
                            random_segment_prob=0.2)
    assert s.episodes == 4
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["features"][REWARD_KEY] == {"dtype": "float32", "shape": [1], "names": None}
    assert info["features"][SUCCESS_KEY]["dtype"] == info["features"][DONE_KEY]["dtype"] == "bool"
    ds = LeRobotDataset(root)
    eps = load_episodes(root)
    for a, b in eps.bounds:  # next.done only on each episode's last frame
        assert eps.done[a:b].tolist() == [False] * (b - a - 1) + [True]
    # trial 0 has noise 0: exactly the expert's episode; trial 1 (noise 0.6) differs from it
    expert = run_episode(RolloutSpec("pushblock", seed_split="train", post_success_steps=20), "pushblock", 0)
    a, b = eps.bounds[0]
    np.testing.assert_array_equal(eps.actions[a:b], expert.frames[ACTION_KEY])
    assert ds.column(REWARD_KEY).dtype == np.float32
    rec = json.loads((root / "meta" / "robopolicy_recording.json").read_text())
    assert rec["config"]["rollout"]["noise_levels"] == [0.0, 0.6]
    with pytest.raises(ValueError, match="rollout"):  # resuming with other noise levels is refused
        record_play_dataset("pushblock", root, 5, num_workers=0, progress=False, noise_levels=(0.0, 0.3))
    with pytest.raises(ValueError, match="noise_levels"):
        PlaySpec("pushblock", noise_levels=(-1.0,))


def test_load_episodes_refuses_a_dataset_without_rewards(tmp_path):
    from robopolicy.data import record_dataset
    from robopolicy.world_model.data import load_episodes

    record_dataset("pushblock", tmp_path / "demo", 1, num_workers=0, progress=False)
    with pytest.raises(ValueError, match="play data"):
        load_episodes(tmp_path / "demo")


def test_rollout_from_history_and_predict_heads_agree_with_step(trained):
    model, _ = trained["diffusion"]
    eps = trained["episodes"]
    s, a = torch.from_numpy(eps.states[:6]), torch.from_numpy(eps.actions[:6])
    r1 = model.init_rollout({STATE_KEY: s})
    r2 = model.rollout_from_history(s[:, None], a[:, None][:, :0])  # n_history=1: no past actions
    assert torch.equal(r1.tensors["states"], r2.tensors["states"])
    out, _ = model.step(r2, a)
    heads = model.predict_heads(TransitionWindows(eps, 1).batch(range(6)))
    assert torch.allclose(heads[SUCCESS_KEY], out.success) and torch.allclose(heads[REWARD_KEY], out.reward)
    with pytest.raises(ValueError, match="rollout_from_history"):
        model.rollout_from_history(s[:, None], a[:, None])
