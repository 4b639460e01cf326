import json

import pytest

from robopolicy.deploy.job import DeployJobConfig, run_deploy
from robopolicy.deploy.safety import SafetyConfig
from robopolicy.deploy.server import PolicyServer
from robopolicy.deploy.testing import save_untrained_checkpoint
from robopolicy.train.checkpoint import load_policy


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_untrained_checkpoint(tmp_path_factory.mktemp("ck") / "run", env="pushblock")


def test_sim_clock_run_writes_its_results(ckpt, tmp_path):
    from envs import make_suite

    out = tmp_path / "out"
    res = run_deploy(DeployJobConfig(checkpoint=str(ckpt.parent), clock="sim", episodes=2, trial=3, max_steps=12,
                                     scheduler="async", scheduler_kwargs={"threshold": 2}, output=str(out)),
                     progress=False)
    suite = make_suite("pushblock")
    assert res["env"] == "pushblock" and res["hz"] == 10.0 and res["episodes"] == 2 and res["clock"] == "sim"
    assert [e["seed"] for e in res["per_episode"]] == [suite.trial_seed("pushblock", t, "eval") for t in (3, 4)]
    assert [e["steps"] for e in res["per_episode"]] == [12, 12]
    t = res["timing"]
    assert t["ticks"] == 24 and t["deadline_misses"] == 0 and t["period_ms"]["max"] == pytest.approx(100)
    # async with threshold 2 and 4-action chunks: a chunk every 3 ticks (simulated time: none late)
    assert t["inference"]["chunks"] == 2 * 4 and not t["holds"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["successes"] == 0 and saved["ci95"][1] == pytest.approx(res["ci95"][1])
    assert {"csv", "summary", "plot"} <= set(res["files"]) and (out / "timing.png").exists()


def test_through_a_server_the_env_comes_from_its_hello(ckpt, tmp_path):
    policy = load_policy(ckpt)
    with PolicyServer(policy, port=0, metadata={"env": "pushblock", "obs": "state"}) as srv:
        res = run_deploy(DeployJobConfig(server=srv.url, clock="sim", max_steps=6, output=str(tmp_path / "o"),
                                         plot=False), progress=False)
        assert srv.health()["connections"] == 2  # the probe, then the loop's client
    assert res["env"] == "pushblock" and res["source"] == srv.url and res["per_episode"][0]["steps"] == 6
    assert res["timing"]["inference"]["chunks"] == 2


def test_custom_robot_class(ckpt, tmp_path):
    res = run_deploy(DeployJobConfig(checkpoint=str(ckpt), robot="deploy_fakes:RecordingRobot",
                                     robot_kwargs={"state_dim": 10}, hz=50, max_steps=5,
                                     safety=SafetyConfig(max_delta=[0.1]), output=str(tmp_path / "o"), plot=False),
                     progress=False)
    ep = res["per_episode"][0]
    assert res["robot"] == "deploy_fakes:RecordingRobot" and ep["steps"] == 5 and ep["seed"] is None
    assert ep["stop_reason"] == "max_steps"


def test_bad_configs_say_what_is_wrong(ckpt, tmp_path):
    with pytest.raises(ValueError, match="exactly one of checkpoint"):
        run_deploy(DeployJobConfig())
    with pytest.raises(ValueError, match="exactly one of checkpoint"):
        run_deploy(DeployJobConfig(checkpoint=str(ckpt), server="ws://x:1"))
    with pytest.raises(ValueError, match="clock=sim only works with robot=sim"):
        run_deploy(DeployJobConfig(checkpoint=str(ckpt), robot="a:B", clock="sim"))
    with pytest.raises(ValueError, match="cannot load robot class 'nope.nothing:Arm'"):
        run_deploy(DeployJobConfig(checkpoint=str(ckpt), robot="nope.nothing:Arm", output=str(tmp_path)))
    with pytest.raises(ValueError, match="robot must be 'sim' or 'package.module:Class'"):
        run_deploy(DeployJobConfig(checkpoint=str(ckpt), robot="arm", output=str(tmp_path)))
    with pytest.raises(ValueError, match="unknown scheduler 'fast'"):
        run_deploy(DeployJobConfig(checkpoint=str(ckpt), scheduler="fast", clock="sim", output=str(tmp_path)))
    from robopolicy.deploy.client import ServerUnavailable

    with pytest.raises(ServerUnavailable, match="no policy server at ws://127.0.0.1:9"):
        run_deploy(DeployJobConfig(server="ws://127.0.0.1:9"))
