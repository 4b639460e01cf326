"""robopolicy-deploy with clock=sim repeats robopolicy-eval episode for episode: same initial
states, same noise streams (one per episode, whatever the evaluator's n_envs), same scheduler, so
the same commands reach the simulator and successes and lengths are identical."""

import gymnasium as gym
import numpy as np

from envs.pushblock import PushBlockSuite
from robopolicy.deploy import ControlLoop, PolicySource, SimClock, SimRobot, make_scheduler
from robopolicy.deploy.loop import LoopConfig
from robopolicy.deploy.noise import episode_noise_seed
from robopolicy.deploy.testing import untrained_state_policy
from robopolicy.eval import evaluate

STEPS = 16  # short episodes keep the test fast; both paths see the same truncation


class _LogActions(gym.Wrapper):
    """Records the (clipped, as simulated) command of every step under the episode's reset seed,
    and truncates the episode after ``STEPS`` steps."""

    def __init__(self, env, log):
        super().__init__(env)
        self.log, self.actions, self.n = log, [], 0

    def reset(self, *, seed=None, options=None):
        # An evaluator's padding slot repeats the batch's last seed (and its noise stream): same log.
        self.actions, self.n = [], 0
        self.log[seed] = self.actions
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.actions.append(np.clip(np.asarray(action, np.float32), self.action_space.low,
                                          self.action_space.high))
        obs, r, term, trunc, info = self.env.step(action)
        self.n += 1
        return obs, r, term, trunc or self.n >= STEPS, info


class _ShortPushBlock(PushBlockSuite):
    def __init__(self):
        super().__init__(obs="state")
        self.log: dict[int, list[np.ndarray]] = {}

    def max_episode_steps(self, task):
        return STEPS

    def make_env(self, task="pushblock"):
        return _LogActions(super().make_env(task), self.log)


def test_sim_deploy_loop_repeats_the_evaluator_episode_for_episode():
    sched = "sync"
    suite = _ShortPushBlock()
    policy = untrained_state_policy(suite)  # sampling noise drives its actions
    seed, trials = 7, 3
    res = evaluate(policy, suite, episodes=trials, n_envs=2, scheduler=sched, seed=seed, progress=False,
                   vector="sync")
    eval_log = {s: np.stack(a) for s, a in suite.log.items()}
    assert res["noise"] == "episode"

    suite.log.clear()
    clock = SimClock()
    robot = SimRobot(suite, clock=clock)
    eps = []
    with ControlLoop(robot, PolicySource(policy, dt=1 / suite.fps), make_scheduler(sched), LoopConfig(hz=suite.fps),
                     clock=clock) as loop:
        for t in range(trials):
            s = suite.trial_seed(suite.tasks[0], t, "eval")
            eps.append(loop.run_episode(seed=s, noise_seed=episode_noise_seed(seed, s)))
    robot.close()

    assert [(e["success"], e["length"]) for e in res["per_episode"]] == [(e.success, e.steps) for e in eps]
    for e in res["per_episode"]:
        n = e["length"]
        np.testing.assert_array_equal(suite.log[e["seed"]][:n], eval_log[e["seed"]][:n])
    # The commands are the policy's, not a constant: the noise streams really differ per episode.
    first = [eval_log[e["seed"]][0] for e in res["per_episode"]]
    assert not np.array_equal(first[0], first[1])


def test_evaluator_results_do_not_depend_on_n_envs():
    suite = _ShortPushBlock()
    policy = untrained_state_policy(suite)
    logs = []
    for n_envs in (1, 2):
        suite.log.clear()
        evaluate(policy, suite, episodes=3, n_envs=n_envs, seed=3, progress=False, vector="sync")
        logs.append({s: np.stack(a)[:STEPS] for s, a in suite.log.items()})
    assert logs[0].keys() == logs[1].keys()
    for s in logs[0]:
        np.testing.assert_array_equal(logs[0][s], logs[1][s])
