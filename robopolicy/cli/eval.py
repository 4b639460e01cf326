"""``robopolicy-eval checkpoint=<path> episodes=50 [env=<suite>]``: success rate per task with a
95% CI, mean episode length, videos, a table, a plot, and eval_info.json in the results folder."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from robopolicy.cli.configstore import CONFIG_DIR
from robopolicy.cli.errors import config_errors

USAGE = """\
robopolicy-eval checkpoint=<run or step folder> [episodes=50] [env=<suite>] [key=value ...]:
evaluate a checkpoint in simulation on held-out initial states; results in <step>/eval_<env>/."""


@hydra.main(config_path=CONFIG_DIR, config_name="eval", version_base="1.3")
def _main(cfg: DictConfig) -> float:
    from robopolicy.config_utils import check_suite, to_object
    from robopolicy.eval.job import run_eval
    from robopolicy.train.checkpoint import resolve_checkpoint

    with config_errors():
        job = to_object(cfg)
        resolve_checkpoint(job.checkpoint)
        if job.env is not None:
            check_suite(job.env)
    result = run_eval(job)
    print(result.get("table", ""))
    print(f"\nsuccess rate {result['success_rate']:.1%} over {result['episodes']} episodes "
          f"(95% CI {result['ci95'][0]:.1%}-{result['ci95'][1]:.1%}); results in {result.get('out_dir')}")
    return result["success_rate"]


def main() -> None:
    from hydra.core.config_store import ConfigStore

    from robopolicy.cli.help import register_help
    from robopolicy.eval.job import EvalJobConfig

    ConfigStore.instance().store(name="eval_schema", node=EvalJobConfig)
    register_help("robopolicy-eval", USAGE, EvalJobConfig)
    _main()


if __name__ == "__main__":
    main()
