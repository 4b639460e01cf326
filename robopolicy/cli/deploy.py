"""``robopolicy-deploy checkpoint=<path> robot=sim hz=20``: run a checkpoint (or a policy server,
``server=ws://host:port``) on a robot in a fixed-rate control loop with the safety layer; writes a
timing log, a timing plot and summary.json. See configs/deploy.yaml and docs/deploy.md."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from robopolicy.cli.configstore import CONFIG_DIR  # noqa: E402
from robopolicy.cli.errors import config_errors  # noqa: E402

USAGE = """\
robopolicy-deploy checkpoint=<run or step folder> [robot=sim] [hz=20] [key=value ...], or
robopolicy-deploy server=ws://host:port env=<suite> ...: run a policy on a robot in a fixed-rate
control loop with the safety layer (docs/deploy.md)."""


@hydra.main(config_path=CONFIG_DIR, config_name="deploy", version_base="1.3")
def _main(cfg: DictConfig) -> float:
    from robopolicy.config_utils import check_suite, to_object
    from robopolicy.deploy.job import run_deploy
    from robopolicy.train.checkpoint import resolve_checkpoint

    with config_errors():
        job = to_object(cfg)
        if job.checkpoint is not None:
            resolve_checkpoint(job.checkpoint)
        if job.env is not None:
            check_suite(job.env)
    result = run_deploy(job)
    t = result["timing"]
    jitter, lat = t.get("jitter_ms") or {}, t.get("inference") or {}
    print(f"\n{result['successes']}/{result['episodes']} episodes succeeded ({result['success_rate']:.1%}, 95% CI "
          f"{result['ci95'][0]:.1%}-{result['ci95'][1]:.1%}) at {result['hz']:g} Hz; period jitter p50 "
          f"{jitter.get('p50') or 0:.2f} / p99 {jitter.get('p99') or 0:.2f} ms, {t.get('deadline_misses', 0)} "
          f"deadline misses, inference p50 {lat.get('latency_ms_p50') or 0:.1f} ms; results in {result['out_dir']}")
    return result["success_rate"]


def main() -> None:
    from hydra.core.config_store import ConfigStore

    from robopolicy.cli.help import register_help
    from robopolicy.deploy.job import DeployJobConfig

    ConfigStore.instance().store(name="deploy_schema", node=DeployJobConfig)
    register_help("robopolicy-deploy", USAGE, DeployJobConfig)
    _main()


if __name__ == "__main__":
    main()
