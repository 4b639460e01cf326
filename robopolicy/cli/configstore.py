"""Registers the typed schemas with Hydra's ConfigStore: a wrong key or value is Hydra's error."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore

from robopolicy import registry
from robopolicy.train.config import TrainConfig

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name in registry.names("policy"):
        cs.store(group="policy", name=name, node=registry.get("policy", name).config_class)
