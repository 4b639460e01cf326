"""The refiner: 2 iterations write loadable checkpoints into a new run folder, the imitation run
stays byte-identical, ``last`` / ``best`` name the iteration with the best imagined success; the
CLI refuses an unknown key and a missing checkpoint with one line."""

import json
import os
import subprocess
import sys

import pytest
import torch
from rl_fakes import make_checkpoints, tree_hash

from robopolicy.rl.config import RefineConfig
from robopolicy.rl.refine import choose_refine_dir, run_refine

FAST = dict(states_per_iter=2, rollouts_per_state=2, n_envs=4, max_episode_steps=10, updates_per_iter=3,
            batch_size=8, lr=1e-3, eval_episodes=2, eval_n_envs=2, device="cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: a second torch thread only adds contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("rl_refine"))


def _weights(step_dir):
    from robopolicy.train.checkpoint import load_policy

    return {k: v.clone() for k, v in load_policy(step_dir).state_dict().items()}


def test_refine_writes_a_new_run_keeps_the_best_and_never_touches_the_imitation_run(paths):
    from robopolicy.train.checkpoint import load_policy, resolve_checkpoint

    before = tree_hash(paths["policy"])
    scores = iter([0.2, 0.6, 0.4])  # imagined success of iterations 0 (imitation), 1, 2
    cfg = RefineConfig(checkpoint=str(paths["policy"]), world_model=str(paths["wm"]), iterations=2, **FAST)
    log = run_refine(cfg, progress=False, evaluate_fn=lambda p, s, c: {"success_rate": next(scores)})
    run = paths["policy"].parent / "policy_refined"
    assert log["run_dir"] == str(run) and tree_hash(paths["policy"]) == before
    assert sorted(p.name for p in run.glob("step_*")) == [f"step_{i:08d}" for i in range(3)]
    assert (run / "last").read_text().strip() == (run / "best").read_text().strip() == "step_00000001"
    assert log["best_iteration"] == 1 and resolve_checkpoint(run) == run / "step_00000001"
    saved = json.loads((run / "refine.json").read_text())
    assert [r["imagined_success"] for r in saved["iterations"]] == [0.2, 0.6, 0.4]
    assert saved["iterations"][1]["updates"] == 3 and saved["iterations"][1]["collect_episodes"] == 4
    # ordinary policy checkpoints: step 0 is the imitation weights, step 1 moved away from them
    imitation, w0, w1 = _weights(paths["policy"]), _weights(run / "step_00000000"), _weights(run / "step_00000001")
    assert all(torch.equal(imitation[k], w0[k]) for k in imitation)
    assert any(not torch.equal(imitation[k], w1[k]) for k in imitation)
    policy = load_policy(run)  # the run folder -> its best step, as robopolicy-eval / deploy / serve load it
    assert torch.equal(policy.state_dict()[next(iter(w1))], w1[next(iter(w1))])
    from robopolicy.train.checkpoint import load_train_config

    tc = load_train_config(run / "step_00000001")
    assert tc["env"] == "pushblock" and tc["refine"]["method"] == "awr" and tc["refined_from"].endswith("step_00000005")
    # a second run goes to the next free folder; the imitation run itself is refused
    assert choose_refine_dir(cfg, resolve_checkpoint(paths["policy"])).name == "policy_refined_2"
    inside = RefineConfig(checkpoint=str(paths["policy"]), world_model=str(paths["wm"]),
                          output_dir=str(paths["policy"].parent), run_name="policy")
    with pytest.raises(ValueError, match="never writes there"):
        choose_refine_dir(inside, resolve_checkpoint(paths["policy"]))


def test_filtered_refine_with_the_in_model_evaluation(paths):
    before = tree_hash(paths["policy"])
    cfg = RefineConfig(checkpoint=str(paths["policy"]), world_model=str(paths["wm"]), iterations=1,
                       method="filtered", run_name="filtered", **FAST)
    log = run_refine(cfg, progress=False)  # the real in-model evaluation picks the best iteration
    rows = log["iterations"]
    assert len(rows) == 2 and all(0.0 <= r["imagined_success"] <= 1.0 for r in rows)
    best = max(range(2), key=lambda i: (rows[i]["imagined_success"], -i))
    assert log["best_iteration"] == best and tree_hash(paths["policy"]) == before


def _cli(*args, cwd):
    env = dict(os.environ, MUJOCO_GL="egl", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "robopolicy.cli.refine", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_cli_refuses_an_unknown_key_and_a_missing_checkpoint_with_one_line(paths, tmp_path):
    out = _cli(f"checkpoint={tmp_path / 'nope'}", f"world_model={paths['wm']}", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: checkpoint path") and "nope" in out.stderr
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr
    out = _cli(f"checkpoint={paths['policy']}", f"world_model={paths['policy']}", cwd=tmp_path)
    assert out.returncode == 2 and "not a world model" in out.stderr and len(out.stderr.splitlines()) == 1
    out = _cli(f"checkpoint={paths['policy']}", f"world_model={paths['wm']}", "+bogus=1", cwd=tmp_path)
    assert out.returncode == 2 and "bogus" in out.stderr and len(out.stderr.splitlines()) == 1
    out = _cli(f"checkpoint={paths['policy']}", f"world_model={paths['wm']}", "method=nope", cwd=tmp_path)
    assert out.returncode == 2 and "method must be one of" in out.stderr
    assert not (paths["policy"].parent / "policy_refined_2").exists()
