"""Registers the typed schemas with Hydra's ConfigStore: a wrong key or value is Hydra's error
(or, for keys added with ``+``/``++``, ``config_utils.to_object``'s), and the ``--help`` page."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from robopolicy import registry
from robopolicy.cli.help import register_help
from robopolicy.train.config import TrainConfig

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")

TRAIN_USAGE = """\
robopolicy-train [key=value ...]: record demonstrations if missing, train a policy, evaluate it,
print the success rate. Examples:
  robopolicy-train policy=diffusion env=metaworld/mt1/push-v3 obs=image steps=20000
  robopolicy-train env=metaworld/mt1/push-v3 steps=20000 resume=true   (continue a killed run)
policy.* lists the fields of the chosen family (policy=<name> --help for another family's)."""


def register_configs(full_help: bool | None = False) -> None:
    """The train schema, one ``policy`` option per registered family, and the help page
    (``full_help=None``: with the field list when ``--help`` is on the command line)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name in registry.names("policy"):
        cs.store(group="policy", name=name, node=registry.get("policy", name).config_class)
    full = "--help" in sys.argv[1:] if full_help is None else full_help
    extra = ""
    if full:
        from robopolicy.config_utils import suites_text

        extra = "== Suites (env=...) ==\n" + textwrap.fill(suites_text(), 100, break_on_hyphens=False)
    register_help("robopolicy-train", TRAIN_USAGE, TrainConfig, full=full, extra=extra,
                  overrides={"policy": registry.get("policy", _policy_choice()).config_class} if full else None)


def _policy_choice(argv: list[str] | None = None) -> str:
    """The family ``--help`` describes: ``policy=<name>`` on the command line, else train.yaml's default."""
    for arg in reversed(sys.argv[1:] if argv is None else argv):
        if arg.startswith("policy="):
            name = arg.split("=", 1)[1]
            if name in registry.names("policy"):
                return name
    defaults = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "train.yaml").defaults)
    return next(d["policy"] for d in defaults if isinstance(d, dict) and "policy" in d)
