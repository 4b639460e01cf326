"""The image world model: frame windows, shapes, learning a fixed batch, checkpoints through
load_world_model, the imagined vector env with a camera, config errors, open-loop fidelity."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from robopolicy.types import ACTION_KEY, IMAGE_PREFIX, STATE_KEY
from robopolicy.world_model.config import ImageWorldModelConfig
from robopolicy.world_model.data import NEXT_STATE_PAD_KEY, Episodes, TransitionWindows, next_key
from robopolicy.world_model.env import WorldModelSuite, check_policy_fits
from robopolicy.world_model.image_model import ImageWorldModel
from robopolicy.world_model.play import REWARD_KEY

S, A, HW = 2, 2, 16
CAM = IMAGE_PREFIX + "top"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only adds contention on a shared machine
    yield
    torch.set_num_threads(threads)


def render(pos: np.ndarray) -> np.ndarray:
    """(N, 2) positions in [0, 1] -> (N, 3, HW, HW) uint8 frames: a 4x4 bright square on grey."""
    out = np.full((len(pos), 3, HW, HW), 40, dtype=np.uint8)
    for i, (x, y) in enumerate(pos):
        r, c = int(round(y * (HW - 4))), int(round(x * (HW - 4)))
        out[i, :, r: r + 4, c: c + 4] = np.array((230, 200, 90) if i % 2 else (90, 230, 200), np.uint8)[:, None, None]
    return out


def square_next(s: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.clip(s + 0.15 * a, 0, 1).astype(np.float32)


def _stats(x: np.ndarray) -> dict:
    x = x.reshape(len(x), -1)
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0) + 1e-6}


def square_episodes(n_eps: int = 6, length: int = 8, seed: int = 0) -> Episodes:
    rng = np.random.default_rng(seed)
    states, actions, bounds = [], [], []
    for e in range(n_eps):
        s = rng.uniform(0, 1, S).astype(np.float32)
        for _ in range(length):
            a = rng.uniform(-1, 1, A).astype(np.float32)
            states.append(s)
            actions.append(a)
            s = square_next(s, a)
        bounds.append((e * length, (e + 1) * length))
    st, ac = np.stack(states), np.stack(actions)
    succ = square_next(st, ac)[:, 0] > 0.7
    rew = -np.abs(square_next(st, ac)[:, 0] - 0.7).astype(np.float32)
    done = np.zeros(len(st), bool)
    done[np.array(bounds)[:, 1] - 1] = True
    stats = {STATE_KEY: _stats(st), ACTION_KEY: _stats(ac), REWARD_KEY: _stats(rew)}
    return Episodes(st, ac, rew, succ, done, np.array(bounds), np.arange(n_eps), stats, fps=10.0,
                    frames={CAM: render(st)})


def tiny_config(**kw) -> ImageWorldModelConfig:
    base = dict(n_history=2, patch_size=4, dim=32, depth=2, n_heads=2, head_hidden_dim=32, head_depth=1)
    base.update(kw)
    return ImageWorldModelConfig(**base)


def tiny_model(eps: Episodes | None = None, **kw) -> ImageWorldModel:
    torch.manual_seed(0)
    return ImageWorldModel.from_episodes(tiny_config(**kw), eps or square_episodes())


def raw_obs(eps: Episodes, rows) -> dict[str, torch.Tensor]:
    """The env's raw observation format: state float, camera (B, H, W, C) uint8."""
    rows = np.asarray(rows)
    return {STATE_KEY: torch.from_numpy(eps.states[rows]),
            CAM: torch.from_numpy(eps.frames[CAM][rows].transpose(0, 2, 3, 1).copy())}


# --- data ---------------------------------------------------------------------------------------
def test_windows_carry_history_and_next_frames():
    eps = square_episodes(n_eps=2, length=5)
    w = TransitionWindows(eps, n_history=3)
    item = w[1]  # frame 1: frame 0 repeats before the start
    f = eps.frames[CAM]
    assert item[CAM].shape == (3, 3, HW, HW) and item[CAM].dtype == torch.float32
    assert torch.equal(item[CAM], torch.from_numpy(f[[0, 0, 1]]).float() / 255)
    assert torch.equal(item[next_key(CAM)], torch.from_numpy(f[[2]]).float() / 255)
    last = w[4]  # no recorded next frame: the same padding flag as the next state
    assert last[NEXT_STATE_PAD_KEY].tolist() == [True]
    stacked = w.batch([0, 4, 5])
    collated = torch.utils.data.default_collate([w[0], w[4], w[5]])
    assert stacked.keys() == collated.keys() and all(torch.equal(stacked[k], collated[k]) for k in stacked)
    assert eps.episode(1)[CAM].shape == (5, 3, HW, HW)


# --- shapes -------------------------------------------------------------------------------------
def test_loss_and_step_shapes_and_history_roll():
    eps = square_episodes()
    model = tiny_model(eps)
    assert model.observation_keys == [STATE_KEY, CAM]
    loss, info = model.loss(TransitionWindows(eps, 2).batch(range(0, 40, 3)))
    assert torch.isfinite(loss) and {"dynamics", "frame", "state", "success_bce", "reward_mse", "done_bce"} <= set(info)
    r = model.init_rollout(raw_obs(eps, range(4)))
    assert r.tensors["frames"].shape == (4, 2, 3, HW, HW) and r.tensors["states"].shape == (4, 2, S)
    assert r.tensors["actions"].shape == (4, 1, A)
    out, r2 = model.step(r, torch.zeros(4, A), generator=torch.Generator().manual_seed(0))
    assert out.obs[CAM].shape == (4, HW, HW, 3) and out.obs[CAM].dtype == torch.uint8
    assert out.obs[STATE_KEY].shape == (4, S) and out.reward.shape == out.success.shape == out.done.shape == (4,)
    assert r2.step == 1 and torch.equal(r2.tensors["frames"][:, 0], r.tensors["frames"][:, 1])
    # the rolled-in frame is the returned uint8 frame, in the model's [-1, 1] pixels
    back = out.obs[CAM].permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.allclose(r2.tensors["frames"][:, 1], back, atol=1e-6)
    with pytest.raises(ValueError, match="actions must have shape"):
        model.step(r, torch.zeros(4, A + 1))
    with pytest.raises(ValueError, match="uint8 pixels"):
        model.init_rollout({STATE_KEY: raw_obs(eps, [0])[STATE_KEY], CAM: torch.zeros(1, 3, HW, HW)})
    with pytest.raises(ValueError, match="n_history=2"):
        model.loss(TransitionWindows(eps, 3).batch(range(4)))


def test_gradients_reach_every_parameter():
    eps = square_episodes(n_eps=2)
    model = tiny_model(eps)
    batch = TransitionWindows(eps, 2).batch(range(16))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):  # adaLN-Zero gates and heads start at zero: two steps open every path
        torch.manual_seed(1)
        loss = model.loss(batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad()
    torch.manual_seed(1)
    model.loss(batch)[0].backward()
    without = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []


@pytest.mark.parametrize("target", ["residual", "frame"])
def test_loss_decreases_on_a_fixed_batch(target):
    eps = square_episodes()
    model = tiny_model(eps, frame_target=target)
    batch = TransitionWindows(eps, 2).batch(range(0, 48, 2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        torch.manual_seed(0)  # the same noise levels and noise every step: a fixed objective
        loss, info = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(info["dynamics"])
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses


# --- config errors ------------------------------------------------------------------------------
def test_frames_not_divisible_by_patch_are_refused_clearly():
    eps = square_episodes(n_eps=2)
    with pytest.raises(ValueError, match=r"16x16, not divisible by image_model.patch_size=6"):
        ImageWorldModel.from_episodes(tiny_config(patch_size=6), eps)
    with pytest.raises(ValueError, match="divisible by n_heads"):
        ImageWorldModelConfig(dim=30, n_heads=4)
    with pytest.raises(ValueError, match="frame_target must be residual or frame"):
        ImageWorldModelConfig(frame_target="delta")
    with pytest.raises(ValueError, match="continuous"):
        from robopolicy.tokenizers.action import TokenizerConfig
        ImageWorldModelConfig(tokenizer=TokenizerConfig(kind="discrete"))
    with pytest.raises(ValueError, match="camera"):
        ImageWorldModel.from_episodes(tiny_config(camera="wrist"), eps)
    from robopolicy.world_model.train import WorldModelTrainConfig, default_run_name

    with pytest.raises(ValueError, match="image_size=84 is not divisible by image_model.patch_size=8"):
        WorldModelTrainConfig(obs="image", image_size=84)
    cfg = WorldModelTrainConfig(obs="image", env="pushblock")
    assert default_run_name(cfg) == "pushblock_wm_image" and cfg.image_model.patch_size == 8


def test_default_config_is_cpu_sized():
    eps = square_episodes(n_eps=2)
    eps64 = Episodes(eps.states, eps.actions, eps.rewards, eps.success, eps.done, eps.bounds, eps.episode_index,
                     eps.stats, 10.0, {CAM: np.zeros((len(eps.states), 3, 64, 64), np.uint8)})
    model = ImageWorldModel.from_episodes(ImageWorldModelConfig(), eps64)
    n = sum(p.numel() for p in model.parameters())
    assert model.patch_pos.shape == (64, 128) and n < 3_000_000, n


# --- checkpoints --------------------------------------------------------------------------------
def test_checkpoint_round_trip_through_load_world_model(tmp_path):
    import robopolicy
    from robopolicy.train.checkpoint import save_checkpoint

    eps = square_episodes()
    model = tiny_model(eps)
    with torch.no_grad():  # move the zero-initialised layers so the comparison means something
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_checkpoint(tmp_path / "run", 3, model, None, None, {"env": "square", "obs": "image"})
    meta = json.loads((tmp_path / "run" / "step_00000003" / "meta.json").read_text())
    assert meta["kind"] == "world_model" and meta["policy"] == "image"
    assert meta["features"]["cameras"] == {"top": [3, HW, HW]}
    loaded = robopolicy.load_world_model(tmp_path / "run")
    assert isinstance(loaded, ImageWorldModel) and loaded.config == model.config
    model.eval()
    obs, a = raw_obs(eps, range(6)), torch.from_numpy(eps.actions[:6])
    outs = []
    for m in (model, loaded):
        r, gen = m.init_rollout(obs), torch.Generator().manual_seed(5)
        steps = []
        for _ in range(2):
            out, r = m.step(r, a, generator=gen)
            steps.append(out)
        outs.append(steps)
    for o1, o2 in zip(*outs):
        for key in ("reward", "success", "done"):
            assert torch.equal(getattr(o1, key), getattr(o2, key))
        assert torch.equal(o1.obs[CAM], o2.obs[CAM]) and torch.equal(o1.obs[STATE_KEY], o2.obs[STATE_KEY])


# --- the imagined vector env --------------------------------------------------------------------
class SquareEnv(gym.Env):
    """The square world as a real env with a camera (raw format: uint8 (H, W, C))."""

    def __init__(self):
        self.observation_space = spaces.Dict({STATE_KEY: spaces.Box(0, 1, (S,), np.float32),
                                              CAM: spaces.Box(0, 255, (HW, HW, 3), np.uint8)})
        self.action_space = spaces.Box(-1, 1, (A,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        s = self.np_random.uniform(0, 1, S).astype(np.float32)
        return {STATE_KEY: s, CAM: render(s[None])[0].transpose(1, 2, 0)}, {"success": False}


class SquareSuite:
    name, tasks, fps = "square", ["sq"], 10.0

    def instruction(self, task):
        return "move the square right"

    def max_episode_steps(self, task):
        return 4

    def trial_seed(self, task, trial, split):
        return 1000 * (split == "eval") + trial

    def check_task(self, task):
        if task not in self.tasks:
            raise ValueError(f"no task {task!r}")

    def make_env(self, task):
        return SquareEnv()


def test_vector_env_steps_a_batch_of_imagined_image_episodes():
    model = tiny_model()
    suite = WorldModelSuite(model, SquareSuite())
    assert suite.obs == "image" and suite.cameras == ["top"]
    vec = suite.make_vector("sq", 3)
    assert vec.single_observation_space[CAM].shape == (HW, HW, 3)
    assert vec.single_observation_space[CAM].dtype == np.uint8 and vec.observation_space[CAM].shape == (3, HW, HW, 3)
    seeds = [suite.trial_seed("sq", i, "eval") for i in range(3)]
    obs, info = vec.reset(seed=seeds)
    real = [SquareEnv().reset(seed=s)[0] for s in seeds]
    assert obs[CAM].dtype == np.uint8 and np.array_equal(obs[CAM], np.stack([o[CAM] for o in real]))
    assert np.array_equal(obs[STATE_KEY], np.stack([o[STATE_KEY] for o in real]))
    a = np.tile(np.array([1.0, 0.0], np.float32), (3, 1))
    frames = []
    for t in range(4):
        obs, reward, term, trunc, info = vec.step(a)
        assert obs[CAM].shape == (3, HW, HW, 3) and obs[CAM].dtype == np.uint8
        assert obs[STATE_KEY].shape == (3, S) and obs[STATE_KEY].dtype == np.float32
        assert reward.shape == (3,) and not term.any() and trunc.all() == (t == 3)
        frames.append(obs[CAM])
    rendered = vec.call("render")  # videos of imagined episodes: the latest imagined frames
    assert len(rendered) == 3 and np.array_equal(np.stack(rendered), frames[-1])
    vec.reset(seed=seeds)  # reproducible from the same seeds
    assert np.array_equal(vec.step(a)[0][CAM], vec_first_frame(suite, seeds, a))


def vec_first_frame(suite, seeds, a):
    vec = suite.make_vector("sq", len(seeds))
    vec.reset(seed=seeds)
    return vec.step(a)[0][CAM]


def test_policy_camera_must_match_the_model():
    from robopolicy.types import FeatureSpec

    model = tiny_model()
    check_policy_fits(model, FeatureSpec(action_dim=A, state_dim=S, cameras={"top": (3, HW, HW)}))
    with pytest.raises(ValueError, match="image size"):
        check_policy_fits(model, FeatureSpec(action_dim=A, state_dim=S, cameras={"top": (3, 84, 84)}))
    with pytest.raises(ValueError, match="does not predict"):
        check_policy_fits(model, FeatureSpec(action_dim=A, state_dim=S, cameras={"wrist": (3, HW, HW)}))


# --- fidelity -----------------------------------------------------------------------------------
def test_image_fidelity_per_horizon_and_strip(tmp_path):
    from PIL import Image

    from robopolicy.world_model.metrics import image_fidelity, save_strip, valid_starts

    eps = square_episodes(n_eps=3, length=6)
    model = tiny_model(eps).eval()
    starts = valid_starts(eps, n_history=2, horizon=3)
    assert starts.tolist() == [1, 2, 7, 8, 13, 14]
    res = image_fidelity(model, eps, horizon=3, n_starts=4, seed=0)
    assert res["horizon"] == [1, 2, 3] and res["n_starts"] == 4
    assert len(res["psnr"]) == len(res["ssim"]) == 3 and all(np.isfinite(res["psnr"]))
    real, imagined = res["first"]
    assert real.shape == imagined.shape == (3, 3, HW, HW) and real.dtype == torch.uint8
    path = save_strip(real, imagined, tmp_path / "strip.png")
    img = np.asarray(Image.open(path))
    assert img.shape == (2 * HW + 2, 3 * HW + 2 * 2, 3)
    assert np.array_equal(img[:HW, :HW], real[0].numpy().transpose(1, 2, 0))
    assert np.array_equal(img[HW + 2:, :HW], imagined[0].numpy().transpose(1, 2, 0))
    with pytest.raises(ValueError, match="long enough"):
        image_fidelity(model, eps, horizon=10)


# --- the real pipeline: recorded play frames -> train-wm obs=image -> load_world_model -----------
def test_recorded_frames_load_as_uint8_and_train_wm_trains_the_image_model(tmp_path):
    import robopolicy
    from robopolicy.data import LeRobotDataset
    from robopolicy.world_model.data import load_episodes
    from robopolicy.world_model.play import record_play_dataset
    from robopolicy.world_model.train import WorldModelTrainConfig, run_wm_training

    root = tmp_path / "play"
    record_play_dataset("pushblock", root, 1, obs="image", image_size=16, num_workers=0, progress=False,
                        post_success_steps=0)
    key = IMAGE_PREFIX + "top"
    eps = load_episodes(root, camera_keys=[key])
    frames = eps.frames[key]
    assert frames.dtype == np.uint8 and frames.shape == (len(eps.states), 3, 16, 16)
    item = LeRobotDataset(root)[3][key]  # the data pipeline's float frame is exactly frame / 255
    assert torch.equal(torch.from_numpy(frames[3]).float() / 255, item)
    with pytest.raises(ValueError, match="camera"):
        load_episodes(root, camera_keys=["top"])
    cfg = WorldModelTrainConfig(env="pushblock", obs="image", image_size=16, dataset=str(root), steps=2, batch_size=8,
                                warmup_steps=0, log_every=1, save_every=2, save_every_minutes=0, num_threads=1,
                                device="cpu", output_dir=str(tmp_path / "ckpt"),
                                image_model=ImageWorldModelConfig(patch_size=4, dim=32, depth=1, n_heads=2,
                                                                  head_hidden_dim=32, head_depth=1))
    result = run_wm_training(cfg, progress=False)
    assert result["train_steps"] == 2 and result["run_dir"].endswith("pushblock_wm_image")
    model = robopolicy.load_world_model(result["run_dir"])
    assert isinstance(model, ImageWorldModel) and model.observation_keys == [STATE_KEY, key]


def test_residual_is_scaled_to_sigma_data_by_its_measured_std_and_kept_in_the_config():
    from robopolicy.world_model.image_model import residual_std

    eps = square_episodes()
    frames = eps.frames[CAM]
    std = residual_std(frames, eps.bounds)
    rows = np.concatenate([np.arange(a, b - 1) for a, b in eps.bounds])
    expect = ((frames[rows + 1].astype(np.float32) - frames[rows]) * (2 / 255)).std()
    assert std == pytest.approx(float(expect), rel=1e-5)
    model = tiny_model(eps)
    assert model.config.residual_std == pytest.approx(std)  # saved with the checkpoint's config
    assert model.residual_scale == pytest.approx(model.config.edm.sigma_data / std)
    assert tiny_model(eps, frame_target="frame").config.residual_std is None
    unscaled = ImageWorldModel(dataclasses.replace(model.config, residual_std=None), model.features, None)
    assert unscaled.residual_scale == 1.0  # a checkpoint from before the field
    with pytest.raises(ValueError, match="residual_std must be > 0"):
        ImageWorldModelConfig(residual_std=0.0)
    with pytest.raises(ValueError, match="no episode has two frames"):
        residual_std(frames[:1], np.array([[0, 1]]))
