"""scripts/bench_ddvla.py: --shard puts every setting in exactly one shard, balanced by cost; the cost
table has a row per round count and the chunk-latency target."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_ddvla.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_ddvla", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shards_partition_the_settings_and_balance_their_cost():
    mod = _load()
    settings = [(f"{kind}{r}", {}, r) for kind, rounds in (("on", (1, 2, 4, 8, 12)), ("off", (2, 4, 8, 12)),
                                                           ("gap", (4, 12))) for r in rounds]
    shards = [mod.shard(settings, k, 2) for k in range(2)]
    assert sorted(s[0] for sh in shards for s in sh) == sorted(s[0] for s in settings)
    costs = [sum(s[2] + 3 for s in sh) for sh in shards]
    assert abs(costs[0] - costs[1]) <= 12  # dealt largest first: within the largest setting's cost
    assert shards[0] == [s for s in settings if s in shards[0]]  # each shard keeps the list's order


def test_cost_table_rows_per_round_count_and_the_chunk_target():
    mod = _load()
    res = {"parallel, 2 rounds, remask": {"ms": 80.0, "evals": 2}, "parallel, 12 rounds, remask": {"ms": 300.0, "evals": 12},
           "autoregressive": {"ms": 1500.0, "evals": 64}, "observation encoding only": {"ms": 20.0, "evals": 0}}
    rows = mod.cost_table(res).splitlines()
    assert "chunk <= 100 ms" in rows[0]
    two = next(r for r in rows if r.startswith("| parallel, 2 rounds"))
    twelve = next(r for r in rows if r.startswith("| parallel, 12 rounds"))
    assert "32.0x fewer" in two and two.endswith("| met |")
    assert "0.20x ok" in twelve and twelve.endswith("| MISSED |")
