"""Side by side, per task and on average: saved multi-task results of bench_success.py (the JSON
files under results/) for variants of one family, e.g. two training objectives, each trained and
evaluated with the same command apart from the option being compared.

    python scripts/ablation_table.py --title "Discrete Diffusion VLA: training objective (metaworld/mt10)" \
        --row "masked only=results/ddvla_objective/masked_only_metaworld_mt10.json" \
        --row "own predictions 0.5=results/ddvla_image_metaworld_mt10/metaworld_mt10.json"

Each row's training command (with its overrides) is listed under the table; nothing is re-run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robopolicy.benchmarks import provenance, write_section


def load_rows(specs: list[str]) -> list[tuple[str, dict]]:
    rows = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"--row must be LABEL=PATH, got {spec!r}")
        p = Path(path)
        if not p.is_file():
            raise SystemExit(f"--row {label!r}: {p} does not exist (run bench_success.py first)")
        res = json.loads(p.read_text())
        if "tasks" not in res:
            raise SystemExit(f"--row {label!r}: {p} is a single-task result; this table compares multi-task suites")
        rows.append((label, res))
    return rows


def table(rows: list[tuple[str, dict]]) -> str:
    tasks = list(rows[0][1]["tasks"])
    for label, res in rows[1:]:
        if list(res["tasks"]) != tasks or res["episodes"] != rows[0][1]["episodes"]:
            raise SystemExit(f"row {label!r} was evaluated on other tasks or episodes than {rows[0][0]!r}")
    lines = ["| variant | train steps | average | 95% CI |" + "".join(f" {t} |" for t in tasks),
             "|---|---|---|---|" + "---|" * len(tasks)]
    for label, r in rows:
        lines.append(f"| {label} | {r['train_steps']} | **{r['success_rate']:.0%}** | {r['ci95'][0]:.0%}-{r['ci95'][1]:.0%} |"
                     + "".join(f" {r['tasks'][t]['success_rate']:.0%} |" for t in tasks))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--title", required=True, help="the docs/benchmarks.md section to (re)write")
    ap.add_argument("--row", action="append", required=True, help="LABEL=PATH of a bench_success.py result JSON")
    ap.add_argument("--intro", default="", help="a sentence on what differs between the rows")
    ap.add_argument("--no-doc", action="store_true", help="print only")
    args = ap.parse_args()
    rows = load_rows(args.row)
    runs = "\n".join(f"- {label}: " + r["command"].strip().replace("  \n", "; ").replace("\n", " ") for label, r in rows)
    per_task = rows[0][1]["episodes"] // len(rows[0][1]["tasks"])
    body = ((args.intro + "\n\n" if args.intro else "") + f"Held-out initial states, {per_task} per task, the same for "
            "every row; averages with their 95% Wilson intervals.\n\n" + table(rows)
            + "\n\nEach row's run:\n\n" + runs + "\n\nTable written by:  \n" + provenance())
    print(table(rows))
    if not args.no_doc:
        write_section(args.title, body)


if __name__ == "__main__":
    main()
