"""``robopolicy-refine checkpoint=<policy> world_model=<wm> [method=awr|filtered|dppo] ...``: refine an
imitation policy by RL inside a world model into a new run folder. See configs/refine.yaml."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from robopolicy.cli.configstore import CONFIG_DIR  # noqa: E402
from robopolicy.cli.errors import config_errors  # noqa: E402

USAGE = """\
robopolicy-refine checkpoint=<policy run or step> world_model=<world-model run> [method=awr|filtered|dppo]
[iterations=10] [key=value ...]: refine the policy inside the world model; writes a new run folder
(default <imitation run>_refined) whose `last` is the best iteration by imagined success."""


@hydra.main(config_path=CONFIG_DIR, config_name="refine", version_base="1.3")
def _main(cfg: DictConfig) -> float:
    from robopolicy.config_utils import check_suite, to_object
    from robopolicy.rl.refine import check_inputs, prepare_refine, run_prepared

    with config_errors():
        job = to_object(cfg)
        if job.env is not None:
            check_suite(job.env)
        check_inputs(job)
        # what only loading shows: a world model of another suite, a policy it cannot feed, no dataset
        prepared = prepare_refine(job)
    log = run_prepared(prepared)
    best = log["best_imagined_success"]
    print(f"\nbest imagined success {best:.1%} at iteration {log['best_iteration']} of {len(log['iterations']) - 1} "
          f"(iteration 0: the imitation policy, {log['iterations'][0]['imagined_success']:.1%}); run folder "
          f"{log['run_dir']} (last -> {log['best_step_dir']}); imagined success is not real success: evaluate "
          f"with robopolicy-eval checkpoint={log['run_dir']}")
    return best


def main() -> None:
    from hydra.core.config_store import ConfigStore

    from robopolicy.cli.help import register_help
    from robopolicy.rl.config import RefineConfig

    ConfigStore.instance().store(name="refine_schema", node=RefineConfig)
    register_help("robopolicy-refine", USAGE, RefineConfig)
    _main()


if __name__ == "__main__":
    main()
