"""Crash points: ``kill -9`` at random moments of ``data curate``, ``run`` and ``report``, then the checks.

Run::

    OMP_NUM_THREADS=1 python benchmarks/crash_points.py --points 20            # all three commands
    OMP_NUM_THREADS=1 python benchmarks/crash_points.py --command curate --points 5 --seed 3

For each kill point the command is started (in its own process group, so reward workers die with it), killed
with SIGKILL once it has used a random amount of CPU time drawn uniformly from [0, 1.1 × the CPU time a full run
of it takes] (CPU, not wall-clock, so that on a busy shared machine the points still spread over the whole
command instead of bunching up in its start-up), and then:

1. right after the kill — the old output is intact or the new one is complete, never a torn file; ``curate``'s
   stats file is absent or describes the output next to it (never old stats beside a new output, or the
   reverse); for ``run``, every stage the manifest calls complete has its output in place and readable, and
   ``manifest.json`` / ``recipe.yaml`` parse;
2. the same command is run again to completion (the "next command"): afterwards no temp file, staging directory
   or set-aside ``.old`` directory survives anywhere in the workspace, and the output is the complete new one.

``run`` uses a reduced quickstart recipe (tiny model 32/64/2/2/300, 400 / 40 items, 20 SFT steps, 2 GRPO steps,
small audit) so that one kill point takes seconds; half of its kill points start from an empty run directory and
half resume what the previous kill left. ``report`` regenerates the report of that run.
Prints one line per kill point and a summary; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_OVERRIDES = ["name=crash", "threads=1", "sft.stop_at=null", "model.tiny.hidden_size=32", "model.tiny.intermediate_size=64",
                 "model.tiny.num_layers=2", "model.tiny.num_heads=2", "model.tiny.vocab_size=300",
                 "data.task.n_train=400", "data.task.n_eval=40", "sft.max_steps=20", "sft.save_steps=5",
                 "sft.eval_every=null", "grpo.max_steps=2", "grpo.save_steps=1", "grpo.eval_every=null",
                 "grpo.preflight=false", "grpo.dynamic_sampling.enabled=false", "grpo.reward_workers=1",
                 "audit.max_items=40", "audit.bootstrap=50", "audit.max_new_tokens=32",
                 "report.samples_per_model=20"]
LEFTOVER_SUFFIXES = (".tmp", ".old")


def thinktune(*args: str) -> list[str]:
    return [sys.executable, "-m", "thinktune", *args]


def run_to_end(cmd: list[str], cwd: Path) -> float:
    """Run ``cmd`` to completion (it must succeed); returns the CPU seconds it and its children used."""
    before = _children_cpu()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_env())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return _children_cpu() - before


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cpu_of(pid: int) -> float | None:
    """CPU seconds used so far by ``pid`` and the children it has waited for (Linux /proc), None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "THINKTUNE_PROGRESS": "0"}


def kill_after(cmd: list[str], cwd: Path, cpu_seconds: float) -> str:
    """Start ``cmd``; SIGKILL its process group once it has used ``cpu_seconds`` of CPU; 'killed' or 'finished'
    (it ended first)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                            start_new_session=True)
    while proc.poll() is None:
        used = _cpu_of(proc.pid)
        if used is not None and used >= cpu_seconds:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "killed"
        time.sleep(0.02)
    return "finished"


def leftovers(root: Path) -> list[str]:
    """Temp files, staging and set-aside directories anywhere under ``root`` (nothing may be running)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if name.endswith(LEFTOVER_SUFFIXES) or ".stage1" in name or (name.startswith(".") and ".tt" in name):
                found.append(str(Path(dirpath, name).relative_to(root)))
    return found


# ---------------------------------------------------------------------------------------------------------------
# data curate


def curate_points(work: Path, points: int, rng: random.Random, log, sizes: tuple[int, int] = (8000, 12000)) -> list[str]:
    """``sizes``: rows of the old and the new input (the test uses fewer)."""

    def rows(prefix: str, n: int) -> str:
        return "".join(json.dumps({"id": f"{prefix}{i}", "question": f"What is {i} plus {i % 97} in {prefix}?",
                                   "reasoning": f"{i} + {i % 97} = {i + i % 97}", "answer": str(i + i % 97)}) + "\n"
                       for i in range(n))

    (work / "old.jsonl").write_text(rows("old", sizes[0]))
    (work / "new.jsonl").write_text(rows("new", sizes[1]))
    out, stats = work / "out" / "cur.jsonl", work / "out" / "cur.jsonl.stats.json"
    out.parent.mkdir()
    cmd = lambda src: thinktune("data", "curate", str(work / src), "-o", str(out))  # noqa: E731
    run_to_end(cmd("new.jsonl"), work)
    new_out, new_stats = out.read_bytes(), stats.read_bytes()
    full = run_to_end(cmd("new.jsonl"), work)  # CPU seconds of the command being killed below
    run_to_end(cmd("old.jsonl"), work)
    old_out, old_stats = out.read_bytes(), stats.read_bytes()
    problems = []
    for k in range(points):
        out.write_bytes(old_out)
        stats.write_bytes(old_stats)
        delay = rng.uniform(0, 1.1 * full)
        state = kill_after(cmd("new.jsonl"), work, delay)
        now_out = out.read_bytes() if out.exists() else None
        now_stats = stats.read_bytes() if stats.exists() else None
        bad = []
        if now_out not in (old_out, new_out):
            bad.append("output is neither the old nor the complete new file")
        pairs = {old_out: old_stats, new_out: new_stats}
        if now_stats is not None and pairs.get(now_out) != now_stats:
            bad.append("stats do not describe the output beside them")
        run_to_end(cmd("new.jsonl"), work)
        if out.read_bytes() != new_out or stats.read_bytes() != new_stats:
            bad.append("the next command did not leave the new output and its stats")
        if left := leftovers(work):
            bad.append(f"left over after the next command: {left}")
        shown = "new" if now_out == new_out else "old"
        log(f"curate point {k + 1:2d}: kill at {delay:5.2f} s CPU ({state}); output {shown}, stats "
            f"{'present' if now_stats is not None else 'absent'}: {'; '.join(bad) or 'ok'}")
        problems += [f"curate point {k + 1}: {b}" for b in bad]
    return problems


# ---------------------------------------------------------------------------------------------------------------
# run and report


def _stage_outputs_ok(root: Path) -> list[str]:
    bad = []
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except FileNotFoundError:
        return []  # killed before the first write
    except ValueError as e:
        return [f"manifest.json does not parse: {e}"]
    if (root / "recipe.yaml").exists():
        from thinktune.safe_yaml import load_yaml_file

        load_yaml_file(root / "recipe.yaml")
    for stage, rec in manifest.get("stages", {}).items():
        if rec.get("status") != "complete":
            continue
        if stage == "data":
            for f in ("train.jsonl", "eval.jsonl"):
                lines = (root / "data" / f).read_text().splitlines()
                if not lines or any(not x.startswith("{") or not x.endswith("}") for x in lines):
                    bad.append(f"data/{f} torn")
            json.loads((root / "data" / "stats.json").read_text())
        elif stage in ("base", "sft", "grpo", "dpo"):
            final = root / stage / "final"
            if not (final / "thinktune_model.json").is_file() or not any(final.glob("*.safetensors")):
                bad.append(f"{stage}/final incomplete")
        elif stage == "audit":
            if not any((root / "audit").glob("*/audit.json")):
                bad.append("audit/ incomplete")
        elif stage == "report" and not _report_complete(root / "report.html"):
            bad.append("report.html torn")
    return bad


def _report_complete(path: Path) -> bool:
    return path.is_file() and path.read_text(encoding="utf-8").endswith("</html>\n")


def _recipe(work: Path) -> str:
    """A copy of the quickstart recipe in the workspace: an edit of the repository's copy mid-run changes nothing."""
    copy = work / "quickstart.yaml"
    if not copy.exists():
        shutil.copyfile(ROOT / "recipes" / "quickstart.yaml", copy)
    return str(copy)


def run_points(work: Path, points: int, rng: random.Random, log) -> list[str]:
    cmd = thinktune("run", _recipe(work), f"output_dir={work / 'runs'}", *RUN_OVERRIDES)
    root = work / "runs" / "crash"
    full = run_to_end(cmd, work)
    log(f"run: a full run of the reduced recipe takes {full:.1f} s of CPU")
    problems = []
    for k in range(points):
        if k % 2 == 0:
            shutil.rmtree(root, ignore_errors=True)  # a fresh start; odd points resume the previous kill's state
        delay = rng.uniform(0, 1.1 * full)
        state = kill_after(cmd, work, delay)
        bad = _stage_outputs_ok(root)
        manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").exists() else {}
        done = [s for s, r in manifest.get("stages", {}).items() if r.get("status") == "complete"]
        if k % 2 == 0 and k + 1 < points:
            next_note = "resumed by the next point"
        else:
            run_to_end(cmd, work)
            bad += _stage_outputs_ok(root)
            if left := leftovers(work):
                bad.append(f"left over after the next command: {left}")
            next_note = "next run completed"
        log(f"run point {k + 1:2d}: kill at {delay:5.1f} s CPU ({state}); complete: {','.join(done) or '-'}; "
            f"{next_note}: {'; '.join(bad) or 'ok'}")
        problems += [f"run point {k + 1}: {b}" for b in bad]
    if (root / "manifest.json").exists():  # the last point's next command
        run_to_end(cmd, work)
    return problems


def report_points(work: Path, points: int, rng: random.Random, log) -> list[str]:
    root = work / "runs" / "crash"
    if not (root / "manifest.json").exists():
        run_to_end(thinktune("run", _recipe(work), f"output_dir={work / 'runs'}", *RUN_OVERRIDES), work)
    cmd = thinktune("report", str(root))
    full = run_to_end(cmd, work)
    log(f"report: one report takes {full:.1f} s of CPU")
    problems = []
    for k in range(points):
        old = (root / "report.html").read_bytes()
        delay = rng.uniform(0, 1.1 * full)
        state = kill_after(cmd, work, delay)
        now = (root / "report.html").read_bytes()
        bad = [] if now == old or _report_complete(root / "report.html") else ["report.html is torn"]
        run_to_end(cmd, work)
        if not _report_complete(root / "report.html"):
            bad.append("the next command left no complete report")
        if left := leftovers(work):
            bad.append(f"left over after the next command: {left}")
        log(f"report point {k + 1:2d}: kill at {delay:5.2f} s CPU ({state}); report {'old' if now == old else 'new'}: "
            f"{'; '.join(bad) or 'ok'}")
        problems += [f"report point {k + 1}: {b}" for b in bad]
    return problems


COMMANDS = {"curate": curate_points, "run": run_points, "report": report_points}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--command", choices=[*COMMANDS, "all"], default="all")
    parser.add_argument("--points", type=int, default=20, help="kill points per command")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep the workspace here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="thinktune-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    problems, counts = [], {}
    try:
        for name in (["curate", "run", "report"] if args.command == "all" else [args.command]):
            sub = work / ("data" if name == "curate" else "pipeline")
            sub.mkdir(exist_ok=True)
            t0 = time.perf_counter()
            problems += COMMANDS[name](sub, args.points, rng, lambda m: print(m, flush=True))
            counts[name] = (args.points, time.perf_counter() - t0)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    for name, (n, seconds) in counts.items():
        print(f"{name}: {n} kill points in {seconds:.0f}s")
    print("all checks passed" if not problems else f"{len(problems)} failed check(s):\n  " + "\n  ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
