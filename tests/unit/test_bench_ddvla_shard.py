"""scripts/bench_ddvla.py --shard: every setting runs in exactly one shard, shards balanced by cost."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_ddvla.py"


def test_shards_partition_the_settings_and_balance_their_cost():
    spec = importlib.util.spec_from_file_location("bench_ddvla", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    settings = [(f"{kind}{r}", {}, r) for kind, rounds in (("on", (1, 2, 4, 8, 12)), ("off", (2, 4, 8, 12)),
                                                           ("gap", (4, 12))) for r in rounds]
    shards = [mod.shard(settings, k, 2) for k in range(2)]
    assert sorted(s[0] for sh in shards for s in sh) == sorted(s[0] for s in settings)
    costs = [sum(s[2] + 3 for s in sh) for sh in shards]
    assert abs(costs[0] - costs[1]) <= 12  # dealt largest first: within the largest setting's cost
    assert shards[0] == [s for s in settings if s in shards[0]]  # each shard keeps the list's order
