from robopolicy.benchmarks import write_section


def test_write_section_replaces_only_its_own_section(tmp_path):
    doc = tmp_path / "b.md"
    write_section("A", "table a1", doc)
    write_section("B", "table b1", doc)
    write_section("A", "table a2", doc)
    text = doc.read_text()
    assert "table a2" in text and "table a1" not in text and "table b1" in text
    assert text.index("## A") < text.index("## B")


def test_demonstration_batch_holds_the_policys_windows_of_sampled_frames(tmp_path):
    from types import SimpleNamespace

    import torch
    from data_fakes import FEATURES, write_episodes

    from robopolicy.benchmarks import demonstration_batch
    from robopolicy.data import LeRobotDatasetWriter

    with LeRobotDatasetWriter.create(tmp_path / "d", 10, FEATURES) as w:
        write_episodes(w, [0, 1])
    policy = SimpleNamespace(  # what the helper reads off a policy
        delta_timestamps=lambda: {"observation.state": [-0.1, 0.0], "action": [-0.1, 0.0, 0.1, 0.2]},
        features=SimpleNamespace(image_keys=[], use_language=True))
    batch = demonstration_batch(policy, tmp_path / "d", 6, torch.Generator().manual_seed(0))
    assert batch["observation.state"].shape == (6, 2, 3) and batch["action"].shape == (6, 4, 2)
    assert len(batch["task"]) == 6 and set(batch["task"]) <= {"task 0", "task 1"}
    # each action window is consecutive frames of one episode (action = [episode, frame index]),
    # repeated where it is clamped at an episode's start or end
    a = batch["action"]
    assert (a[:, :, 0] == a[:, :1, 0]).all()
    steps = (a[:, 1:, 1] - a[:, :-1, 1]).flatten().tolist()
    assert set(steps) <= {0.0, 1.0} and 1.0 in steps
    again = demonstration_batch(policy, tmp_path / "d", 6, torch.Generator().manual_seed(0))
    assert torch.equal(again["action"], batch["action"])  # the generator decides the frames


def test_trace_inputs_refuses_another_family_and_returns_the_demonstrated_actions(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import pytest
    import torch
    from data_fakes import FEATURES, write_episodes

    import robopolicy
    from robopolicy.benchmarks import trace_inputs
    from robopolicy.data import LeRobotDatasetWriter

    with LeRobotDatasetWriter.create(tmp_path / "d", 10, FEATURES) as w:
        write_episodes(w, [0, 1])

    class FakePolicy:
        features = SimpleNamespace(image_keys=[], use_language=False)

        def eval(self):
            return self

        def delta_timestamps(self):
            return {"observation.state": [0.0], "action": [0.0, 0.1]}

        def batch_actions(self, batch):
            return batch["action"] * 2, None

    monkeypatch.setattr(robopolicy, "load_policy", lambda path: FakePolicy())
    with pytest.raises(SystemExit, match="holds a FakePolicy, not a DDVLAPolicy"):
        trace_inputs("ckpt", "DDVLAPolicy", tmp_path / "d", 4, torch.Generator().manual_seed(0))
    p, batch, actions = trace_inputs("ckpt", "FakePolicy", tmp_path / "d", 4, torch.Generator().manual_seed(0))
    assert isinstance(p, FakePolicy) and torch.equal(actions, batch["action"] * 2)


def test_inference_settings_of_each_family_come_from_its_saved_config():
    from robopolicy.benchmarks import inference_config, inference_text

    ebt = inference_config("ebt", {"inference_steps": 4, "max_inference_steps": 8, "adaptive": True, "stop_tol": 0.01,
                                   "n_action_steps": 8, "dim": 128})
    assert ebt == {"inference_steps": 4, "max_inference_steps": 8, "adaptive": True, "stop_tol": 0.01, "n_action_steps": 8}
    assert inference_text("ebt", ebt).startswith("energy descent until a step moves the chunk <= 0.01 RMS: at most 4 "
                                                 "steps, up to 8 while")
    fixed = inference_config("ebt", {"inference_steps": 2, "adaptive": False, "n_action_steps": 8}, {"inference_steps": 3})
    assert inference_text("ebt", fixed) == "energy descent, 3 steps; 8 actions executed per policy call"
    dd = inference_config("ddvla", {"decode_mode": "parallel", "decode_rounds": 12, "remask": True,
                                    "remask_threshold": 0.05, "n_action_steps": 8}, {"decode_rounds": 1, "remask": False})
    assert inference_text("ddvla", dd) == "parallel decoding, 1 round, no remasking; 8 actions executed per policy call"
    dp = inference_config("diffusion", {"noise": {"sampler": "ddim", "num_inference_steps": 10}, "n_action_steps": 8})
    assert inference_text("diffusion", dp) == "DDIM-10 chunks, 8 actions executed per policy call"
    sdp = inference_config("sdp", {"steps_per_act": 1, "n_action_steps": 1})
    assert inference_text("sdp", sdp) == "streaming buffer, 1 denoising step and 1 action executed per policy call"
    assert inference_text("ebt", None) == "not recorded"


def test_write_section_from_concurrent_processes_loses_no_section(tmp_path):
    import multiprocessing as mp

    doc = tmp_path / "bench.md"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(doc, i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    text = doc.read_text()
    for i in range(4):
        for j in range(20):
            assert f"## writer {i} section {j}\n" in text


def _write_many(doc, i):
    from robopolicy.benchmarks import write_section

    for j in range(20):
        write_section(f"writer {i} section {j}", f"body {i} {j}", doc=doc)
