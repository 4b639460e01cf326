"""scripts/bench_sdp.py's cost table: costs per executed action, so Diffusion Policy's usual
8-action chunks (a DDIM-10 call spread over the 8 actions it executes) sit next to re-planning."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_sdp.py"


def _mod():
    spec = importlib.util.spec_from_file_location("bench_sdp", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _r(ms, evals, per_call=1):
    return {"ms": ms, "evals": evals, "cold_ms": ms, "cold_evals": evals, "params": 4.7e6, "actions_per_call": per_call}


def test_chunked_row_spreads_one_call_over_its_actions():
    mod = _mod()
    res = {"SDP (steps_per_act=1)": _r(15.0, 1), "Diffusion Policy DDPM-100": _r(800.0, 100),
           "Diffusion Policy DDIM-10": _r(90.0, 10), mod.CHUNKED: _r(96.0, 10, per_call=8)}
    rows = mod.table(res).splitlines()
    assert "| actions / call |" in rows[0] and "vs DDIM-10 8-action chunks" in rows[0]
    chunk = rows[-1].split(" | ")
    # 10 evaluations and 96 ms per call, 8 actions executed: 1.25 evaluations and 12 ms per action
    assert chunk[2:8] == ["8", "1.25", "80.0x fewer", "96.00", "12.00", "0.13x"] and chunk[8] == "1.00x"
    sdp = rows[2].split(" | ")
    assert sdp[6] == "15.00" and sdp[7] == "0.17x ok" and sdp[8] == "1.25x"  # slower per action than the chunks
