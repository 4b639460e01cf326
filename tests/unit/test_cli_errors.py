"""The entry points: a configuration error is one line ``error: ...`` with exit status 2 (no
traceback, no PyOpenGL INFO line), a crash keeps its traceback, and --help documents the fields."""

import os
import subprocess
import sys

import pytest

from robopolicy.cli.errors import config_errors

ENV = dict(os.environ, MUJOCO_GL="egl", OMP_NUM_THREADS="1")


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "robopolicy.cli.train", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=300)


def test_config_errors_are_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        with config_errors():
            raise ValueError("train: steps must be >= 1, got 0\n(second line)")
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: train: steps must be >= 1, got 0 (second line)\n"
    for exc in (FileNotFoundError("x"), FileExistsError("y")):
        with pytest.raises(SystemExit):
            with config_errors():
                raise exc
    with pytest.raises(RuntimeError):  # not a config error: it propagates (traceback kept)
        with config_errors():
            raise RuntimeError("a crash")


def test_train_cli_bad_suite_is_one_line_without_the_opengl_notice(tmp_path):
    # env=nope is checked against envs.list_suites(), which imports MuJoCo/PyOpenGL after Hydra
    # set up logging: the place the "No OpenGL_accelerate module loaded" INFO line came from
    out = _run("env=nope", f"output_dir={tmp_path}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: env='nope' is not a task suite") and len(out.stderr.splitlines()) == 1
    assert "Traceback" not in out.stderr and "OpenGL_accelerate" not in out.stdout + out.stderr
    assert not list(tmp_path.iterdir())  # nothing recorded, no run folder


@pytest.mark.parametrize("name", ["train", "eval", "deploy", "serve", "record"])
def test_every_job_keeps_pyopengl_info_out_of_its_log(name):
    import logging.config

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from hydra.core.config_store import ConfigStore

    from robopolicy.cli.configstore import CONFIG_DIR, register_configs
    from robopolicy.cli.record import register_configs as register_record
    from robopolicy.deploy.job import DeployJobConfig
    from robopolicy.deploy.serve_job import ServeJobConfig
    from robopolicy.eval.job import EvalJobConfig

    register_configs()
    register_record()
    for job, schema in (("eval", EvalJobConfig), ("deploy", DeployJobConfig), ("serve", ServeJobConfig)):
        ConfigStore.instance().store(name=f"{job}_schema", node=schema)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        logging_cfg = OmegaConf.to_container(compose(name, return_hydra_config=True).hydra.job_logging)
    assert logging_cfg["root"]["level"] == "INFO"  # Hydra's stdout logging otherwise unchanged
    root, opengl = logging.getLogger(), logging.getLogger("OpenGL.acceleratesupport")
    saved = root.level, list(root.handlers), opengl.level
    try:
        logging.config.dictConfig(logging_cfg)
        assert root.isEnabledFor(logging.INFO) and not opengl.isEnabledFor(logging.INFO)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        opengl.setLevel(saved[2])


@pytest.mark.slow
def test_train_help_lists_field_docs_and_suites(tmp_path):
    out = _run("--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "save_every_minutes" in text and "Also checkpoint once this many minutes" in text
    assert "eval.episodes" in text and "policy.noise.num_inference_steps" in text  # the default family's
    assert "== Suites (env=...) ==" in text and "metaworld/mt10" in text and "robosuite/lift" in text
    assert "OpenGL_accelerate" not in text + out.stderr
