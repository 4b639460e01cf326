"""The README's first command on a fresh clone in a fresh virtual environment, timed end to end.

What a new user runs: ``git clone`` of this repository (its committed HEAD), a new venv with no
packages, then the README's first command line verbatim (the line inside the first ```bash
block that calls ``robopolicy-train``), from the clone's root. The install part (everything up to
the last ``&&``) and the main job are timed separately and together; the success rate is read
from the job's own final line. The row goes into docs/benchmarks.md ("Main job: the README's
first command on a fresh clone"), with the exact command line, the machine and the date.

Run it on a quiet machine: the main job's training time is a share of the 2 cores.

    python scripts/bench_main_job.py                  # fresh clone + fresh venv, row into docs
    python scripts/bench_main_job.py --keep /tmp/mj   # keep the clone and venv for a look
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTION = "Main job: the README's first command on a fresh clone"
SUCCESS_RE = re.compile(r"success(?: rate)?[:=]?\s*(\d+(?:\.\d+)?)%", re.I)


def readme_command(readme: str) -> str:
    """The first command line of the README's first ```bash block that runs the main job (the line's
    trailing comment removed)."""
    m = re.search(r"```bash\n(.*?)```", readme, re.S)
    if not m:
        raise ValueError("README has no ```bash block")
    for line in m.group(1).splitlines():
        if "robopolicy-train" in line:
            return line.split("#", 1)[0].strip()
    raise ValueError("the README's first ```bash block has no robopolicy-train line")


def split_install(line: str) -> tuple[str, str]:
    """(install part, main job) of a ``a && b && job`` line, split at its last ``&&``."""
    if "&&" not in line:
        raise ValueError(f"expected 'install && ... && robopolicy-train', got {line!r}")
    head, job = line.rsplit("&&", 1)
    return head.strip(), job.strip()


def last_success(output: str) -> float | None:
    """The success percentage on the last output line that states one, else None."""
    found = SUCCESS_RE.findall(output)
    return float(found[-1]) if found else None


def run_timed(cmd: str, cwd: Path, env: dict[str, str], log: Path) -> tuple[float, int, str]:
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    return time.monotonic() - t0, proc.returncode, log.read_text()


def fmt(s: float) -> str:
    return f"{int(s // 60)} min {int(round(s % 60))} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()

    from robopolicy.benchmarks import provenance, write_section

    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                      capture_output=True, text=True).stdout.strip():
        print("warning: uncommitted changes are not in the clone (it takes the committed HEAD)")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    work = args.keep or Path(tempfile.mkdtemp(prefix="main_job_"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    clone, venv = work / "robopolicy", work / "venv"
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    setup_s = time.monotonic() - t0
    line = readme_command((clone / "README.md").read_text())
    install, job = split_install(line)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=f"{venv / 'bin'}:{env['PATH']}", VIRTUAL_ENV=str(venv), PYTHONNOUSERSITE="1")
    print(f"clone {head} + venv in {work} ({setup_s:.0f} s); running: {line}", flush=True)
    install_s, rc, _ = run_timed(install, clone, env, work / "install.log")
    if rc:
        raise SystemExit(f"install failed (exit {rc}): see {work / 'install.log'}")
    print(f"install: {fmt(install_s)}", flush=True)
    job_s, rc, out = run_timed(job, clone, env, work / "job.log")
    if rc:
        raise SystemExit(f"main job failed (exit {rc}): see {work / 'job.log'}")
    success = last_success(out)
    load_after = os.getloadavg()[0]
    total = install_s + job_s
    print(f"main job: {fmt(job_s)}; total {fmt(total)}; success {success}%")
    tail = "\n".join(out.strip().splitlines()[-3:])
    body = (
        "A new user's path, end to end: `git clone` of the repository (commit " + head + ") and a new, empty "
        "virtual environment (`python -m venv`), then the README's first command line verbatim from the "
        "clone's root. Install = everything before its last `&&` (pip resolves from this machine's package "
        "mirror and wheel folder, as CI does); main job = `" + job + "` (records the demonstrations, trains, "
        "evaluates on held-out initial states, prints the success rate). Clone and venv creation ("
        f"{setup_s:.0f} s) are not counted.\n\n"
        "| command line | install | main job | total | success printed | target |\n"
        "|---|---|---|---|---|---|\n"
        f"| `{line}` | {fmt(install_s)} | {fmt(job_s)} | {fmt(total)} | "
        f"{'?' if success is None else f'{success:.0f}%'} | >= 90% in <= 10 min: "
        f"{'met' if success is not None and success >= 90 and total <= 600 else 'MISSED'} |\n\n"
        f"The job's last lines:\n\n```\n{tail}\n```\n\n" + provenance()
        + f"Load average (1 min) before/after: {load_before:.2f} / {load_after:.2f}\n"
    )
    print(body)
    if not args.no_doc:
        write_section(SECTION, body)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
