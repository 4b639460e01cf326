"""scripts/bench_policy_latency.py's pure logic: ratios are ours / LeRobot within one round (median
and range over rounds), the LeRobot environment is found by flag, env var or default path, and
without LeRobot the table has no LeRobot or ratio columns. No timing here."""

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _mod(name="bench_policy_latency"):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ratio_is_per_round_median_and_range():
    mod = _mod()
    # rounds: 10/20 = 0.5, 30/20 = 1.5, 9/10 = 0.9 -> median 0.9 (not median(ours)/median(ref) = 10/20)
    assert mod.ratio_stats([10.0, 30.0, 9.0], [20.0, 20.0, 10.0]) == pytest.approx((0.9, 0.5, 1.5))
    with pytest.raises(ValueError):
        mod.ratio_stats([1.0, 2.0], [1.0])


def test_table_with_lerobot_compares_ours_only_rows_with_their_counterpart():
    mod = _mod()
    results = {"state": {
        "ddim10": {"ours": [30.0, 40.0, 35.0], "lerobot": [100.0, 100.0, 70.0]},
        "train": {"ours": [100.0, 120.0, 110.0], "lerobot": [200.0, 200.0, 200.0]},
        "train_bf16": {"ours": [300.0, 300.0, 300.0]},
    }}
    params = {"state": {"ours": 4.7e6, "lerobot": 4.69e6}}
    rows = mod.table(results, params).splitlines()
    assert "LeRobot 0.4.4 (ms)" in rows[0] and "ratio ours/LeRobot (median)" in rows[0]
    ddim = [c.strip() for c in rows[2].strip("|").split("|")]
    # per-round ratios 0.30, 0.40, 0.50: median 0.40, range 0.30-0.50; ms columns are medians of rounds
    assert ddim == ["state", "4.7 M / 4.7 M", "DDIM-10 chunk, batch 1", "35.0", "100.0", "0.40", "0.30-0.50", "<= 0.40 ok"]
    train = [c.strip() for c in rows[3].strip("|").split("|")]
    assert train[3:] == ["110.0", "200.0", "0.55", "0.50-0.60", "<= 0.60 ok"]
    bf16 = [c.strip() for c in rows[4].strip("|").split("|")]
    assert "bf16" in bf16[2] and bf16[4:7] == ["200.0", "1.50", "1.50-1.50"]  # against LeRobot's fp32 step
    assert bf16[7] == "<= 0.60 MISSED"
    assert len(rows) == 5
    with_compile = mod.table(results, params, compile_s={"state": 20.0}).splitlines()
    assert with_compile[-1].count("|") == with_compile[0].count("|") and "20,000" in with_compile[-1]


def test_table_without_lerobot_has_no_ratio_column():
    mod = _mod()
    results = {"image": {"ddim10": {"ours": [50.0, 60.0, 55.0]}, "train": {"ours": [900.0, 1000.0]}}}
    text = mod.table(results, {"image": {"ours": 16.4e6}}, compile_s={"image": 12.0})
    rows = text.splitlines()
    assert "ratio" not in text and "LeRobot" not in text and "target" not in text
    assert [c.strip() for c in rows[2].strip("|").split("|")] == ["image", "16.4 M", "DDIM-10 chunk, batch 1", "55.0", "50.0-60.0"]
    assert rows[-1].count("|") == rows[0].count("|")  # the compile row has as many columns as the header


def test_find_lerobot_python_flag_then_env_then_default(tmp_path):
    mod = _mod()
    py = tmp_path / "python"
    py.write_text("")
    default = tmp_path / "venv" / "bin" / "python"
    assert mod.find_lerobot_python(str(py), {}, default) == (py, "")
    assert mod.find_lerobot_python(None, {mod.ENV_VAR: str(py)}, default) == (py, "")
    missing, why = mod.find_lerobot_python(str(tmp_path / "nope"), {mod.ENV_VAR: str(py)}, default)
    assert missing is None and "--lerobot-python" in why  # an explicit path that is wrong is not silently replaced
    assert mod.find_lerobot_python(None, {}, default)[0] is None
    default.parent.mkdir(parents=True)
    default.write_text("")
    assert mod.find_lerobot_python(None, {}, default) == (default, "")


def test_missing_venv_gives_one_line_and_no_worker(tmp_path, monkeypatch):
    mod = _mod()
    monkeypatch.setattr(mod, "DEFAULT_LEROBOT_PYTHON", tmp_path / "absent")
    monkeypatch.delenv(mod.ENV_VAR, raising=False)
    worker, why = mod.start_lerobot(None, 1, ["state"])
    assert worker is None and "\n" not in why and "no ratios" in why


def test_broken_interpreter_is_a_failed_start_not_a_crash(tmp_path):
    mod = _mod()
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'no lerobot here' >&2\nexit 3\n")
    fake.chmod(0o755)
    worker, why = mod.start_lerobot(str(fake), 1, ["state"])
    assert worker is None and "failed to start" in why and "no lerobot here" in why and "\n" not in why


def test_no_reference_numbers_left_in_the_script():
    text = (SCRIPTS / "bench_policy_latency.py").read_text()
    assert "LEROBOT =" not in text
    for number in ("975", "2142", "2,142", "11194", "21283", "2427", "231.0", "95.0", "116.0"):
        assert number not in text


def test_worker_imports_no_robopolicy():
    lines = (SCRIPTS / "lerobot_worker.py").read_text().splitlines()
    imports = [ln.strip() for ln in lines if ln.strip().startswith(("import ", "from "))]
    assert imports and not [ln for ln in imports if "robopolicy" in ln]
