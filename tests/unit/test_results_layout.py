"""One results layout: everything a checkpoint produced lives in its step folder, evaluations
under ``eval/<suite>[_<settings>]`` and deploy runs under ``deploy/<suite>[_<settings>]``."""

import pytest

from robopolicy.deploy.job import DeployJobConfig, run_deploy
from robopolicy.deploy.server import PolicyServer
from robopolicy.deploy.testing import save_untrained_checkpoint
from robopolicy.eval.job import EvalJobConfig, default_eval_dir, run_eval
from robopolicy.paths import results_dir
from robopolicy.train.checkpoint import load_policy


@pytest.fixture(scope="module")
def step(tmp_path_factory):
    return save_untrained_checkpoint(tmp_path_factory.mktemp("ck") / "run", env="pushblock")


def test_results_dir_names_and_refusals(tmp_path):
    assert results_dir(tmp_path, "eval", "metaworld/mt1/push-v3") == tmp_path / "eval" / "metaworld_mt1_push-v3"
    assert results_dir(tmp_path, "deploy", "pushblock", "sim") == tmp_path / "deploy" / "pushblock_sim"
    with pytest.raises(ValueError, match="kind must be one of"):
        results_dir(tmp_path, "eval_step", "pushblock")
    with pytest.raises(ValueError, match="empty folder name"):
        results_dir(tmp_path, "eval", "///")


def test_eval_job_writes_under_the_step_folder(step, monkeypatch):
    import robopolicy.eval

    # the rollouts are not what is tested here: record where evaluate was told to write
    monkeypatch.setattr(robopolicy.eval, "evaluate", lambda *a, out_dir, **kw: {"out_dir": str(out_dir), **kw})
    res = run_eval(EvalJobConfig(checkpoint=str(step.parent), episodes=1, n_envs=1, videos=2), progress=False)
    assert res["out_dir"] == str(step / "eval" / "pushblock") and res["video_dir"] == step / "eval" / "pushblock" / "videos"
    # other settings get their own folder, named by them; the training run's final evaluation
    # (default_eval_dir) lands where robopolicy-eval with the same settings writes
    cfg = EvalJobConfig(checkpoint=str(step), episodes=1, n_envs=1, videos=0, first_trial=2, seed=3,
                        policy_overrides={"n_action_steps": 2})
    res = run_eval(cfg, progress=False)
    want = step / "eval" / "pushblock_n_action_steps-2_from2_seed3"
    assert res["out_dir"] == str(want) and res["seed"] == 3 and res["first_trial"] == 2
    assert default_eval_dir(step, "pushblock", first_trial=2, seed=3, policy_overrides={"n_action_steps": 2}) == want
    assert default_eval_dir(step, "pushblock", scheduler="sync", perturb_step=0, seed=0) == step / "eval" / "pushblock"


def test_deploy_job_writes_under_the_step_folder(step):
    res = run_deploy(DeployJobConfig(checkpoint=str(step.parent), clock="sim", max_steps=2, plot=False),
                     progress=False)
    assert res["out_dir"] == str(step / "deploy" / "pushblock_sim")
    assert (step / "deploy" / "pushblock_sim" / "summary.json").exists()


def test_server_runs_go_under_the_served_checkpoint_or_need_output(step, tmp_path):
    policy = load_policy(step)
    with PolicyServer(policy, port=0, metadata={"env": "pushblock", "obs": "state", "checkpoint": str(step)}) as srv:
        res = run_deploy(DeployJobConfig(server=srv.url, clock="sim", max_steps=2, plot=False), progress=False)
    assert res["out_dir"] == str(step / "deploy" / "pushblock_server_sim")
    missing = tmp_path / "elsewhere" / "step_00000001"
    with PolicyServer(policy, port=0, metadata={"env": "pushblock", "obs": "state", "checkpoint": str(missing)}) as srv:
        with pytest.raises(ValueError, match="not on this machine: pass output="):
            run_deploy(DeployJobConfig(server=srv.url, clock="sim", max_steps=2, plot=False), progress=False)
    assert not (tmp_path / "elsewhere").exists()
