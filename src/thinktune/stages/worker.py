"""Training stages in several processes: the parent launches, the workers train, rank 0 writes.

Design (README "Scaling out"). ``thinktune run --processes N`` keeps the whole pipeline in the parent process —
planning, the manifest, data, base, audit and report run there exactly as in a one-process run — and replaces
each *training* stage (sft, dpo, grpo: every stage with a TRL trainer) by a launch of this module::

    python -m torch.distributed.run --standalone --nproc_per_node N -m thinktune.stages.worker RUN_DIR STAGE
    python -m accelerate.commands.launch --config_file CFG --num_processes N -m thinktune.stages.worker ...

torchrun (plain DDP: gloo on CPU, NCCL on GPU) unless an accelerate config file is given (DeepSpeed, FSDP,
multi-node). Why relaunch per stage rather than the whole run under accelerate: the run-state machine
(run.py) stays single-process, so the manifest has exactly one writer by construction; the non-training stages
(tokenizer building, audits on one model) never wait at barriers; and a failed worker cannot leave the manifest
half-updated — the parent records the failure like any other stage error.

Each worker reads the resolved ``recipe.yaml`` of the run directory (context.read_run_recipe), joins the process
group, and calls the same stage function a one-process run calls (the stage table's entry). Rank 0 writes every file
(thinktune.distributed); its result dict goes back to the parent as a ``@@thinktune`` line on stdout, as do its notes
and progress (the parent shows them with its own reporter) and any error message (re-raised by the parent as a
:class:`StageError`, so the CLI prints it and exits 1). The launcher's full output, every rank included, is kept in
``<stage>/launch.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from thinktune.config import STAGES, TRAINING_STAGES, batch_problems
from thinktune.errors import RecipeError, StageError, ThinktuneError
from thinktune.progress import Reporter, TaskHandle

PREFIX = "@@thinktune "


# -- parent side -----------------------------------------------------------------------------------------------
def read_accelerate_config(path: Path):
    """accelerate's own parser (a ClusterConfig); a bad file is a RecipeError naming it."""
    from accelerate.commands.config.config_args import load_config_from_file

    from thinktune.safe_yaml import YamlError, load_yaml_file

    if not Path(path).is_file():
        raise RecipeError(f"--accelerate-config: {path} does not exist")
    try:  # our limits first (alias bombs, depth, duplicate keys): accelerate parses with plain yaml.safe_load
        load_yaml_file(path, "accelerate config")
    except YamlError as e:
        raise RecipeError(f"--accelerate-config: {e}") from None
    try:
        return load_config_from_file(str(path))
    except Exception as e:  # accelerate raises TypeError/ValueError/yaml errors for a bad file
        raise RecipeError(f"--accelerate-config {path}: not a valid accelerate config ({e})") from None


def sharded(cfg) -> bool:
    """Does this accelerate config shard the parameters (DeepSpeed ZeRO-3, FSDP)?"""
    kind = str(cfg.distributed_type).split(".")[-1]
    return kind == "FSDP" or (kind == "DEEPSPEED" and int((cfg.deepspeed_config or {}).get("zero_stage", 0)) == 3)


def check_processes(recipe, processes: int | None, accelerate_config: Path | None = None) -> int:
    """Refuse (naming the fields) what cannot run in that many processes, before anything is launched.

    Returns the number of processes: ``processes``, else the accelerate config's ``num_processes``, else 1.
    Batch sizes must split evenly. With sharded parameters (ZeRO-3, FSDP) the held-out accuracy callback
    (``eval_every``), which generates on rank 0 alone, would wait forever for the other shards.
    """
    problems = []
    cfg = read_accelerate_config(accelerate_config) if accelerate_config is not None else None
    processes = processes or (int(cfg.num_processes) if cfg is not None and cfg.num_processes else 1)
    if cfg is not None and sharded(cfg):
        for s in STAGES:
            stage_cfg = getattr(recipe, s.field) if s.trains else None
            if stage_cfg is not None and stage_cfg.eval_every:
                problems.append(f"{s.field}.eval_every: held-out generation runs on rank 0 only, which a sharded "
                                f"model (ZeRO-3, FSDP) cannot do; set {s.field}.eval_every=null")
    problems += batch_problems(recipe, processes)
    g = recipe.grpo
    if g is not None and processes > 1 and g.dynamic_sampling.enabled and g.dynamic_sampling.max_rounds > 1:
        problems.append("grpo.dynamic_sampling.max_rounds > 1 needs a single process (stages/dynamic_sampling.py); "
                        "set it to 1 to only mask zero-variance groups")
    if problems:
        raise RecipeError(f"--processes {processes}: this recipe cannot run that way\n  " + "\n  ".join(problems))
    return processes


def launch_command(run_dir: Path, stage: str, resume: bool, processes: int, accelerate_config: Path | None,
                   threads: int | None) -> list[str]:
    worker = ["-m", "thinktune.stages.worker", str(run_dir), stage] + (["--resume"] if resume else [])
    worker += ["--threads", str(threads)] if threads else []
    if accelerate_config is not None:
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
                "--num_processes", str(processes), *worker]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            *worker]


def launch(run_dir, stage: str, resume: bool, processes: int, accelerate_config: Path | None = None,
           threads: int | None = None) -> dict[str, Any]:
    """Run one training stage in ``processes`` workers; returns rank 0's result dict (raises StageError).

    ``run_dir``: the run's :class:`thinktune.context.RunDir` (a StageContext is one)."""
    from thinktune.progress import reporter

    stage_dir = run_dir.stage_dir(stage)
    stage_dir.mkdir(parents=True, exist_ok=True)
    cmd = launch_command(run_dir.root.resolve(), stage, resume, processes, accelerate_config, threads)
    env = dict(os.environ, PYTHONUNBUFFERED="1", THINKTUNE_PARENT_PID=str(os.getpid()))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torchrun would force 1 per process otherwise
    rep = reporter()
    launcher = f"accelerate {accelerate_config}" if accelerate_config else "torchrun"
    rep.note(f"[{stage}] {processes} processes ({launcher}); log: {stage_dir / 'launch.log'}")
    result: dict[str, Any] | None = None
    error: str | None = None
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(stage_dir / "launch.log", "a", encoding="utf-8"))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                bufsize=1)
        tasks: dict[str, Any] = {}  # rank 0's progress bars by name (e.g. DPO pair sampling, then training)
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                log.write(line)
                if not line.startswith(PREFIX):
                    continue
                try:
                    msg = json.loads(line[len(PREFIX):])
                except json.JSONDecodeError:  # another rank's output interleaved: it is in launch.log anyway
                    continue
                if "note" in msg:
                    rep.note(msg["note"])
                elif "task" in msg:
                    if msg["task"] not in tasks:
                        tasks[msg["task"]] = stack.enter_context(rep.task(msg["task"], total=msg.get("total")))
                    tasks[msg["task"]].update(completed=msg.get("completed"), description=msg.get("description"))
                elif "result" in msg:
                    result = msg["result"]
                elif "error" in msg and error is None:
                    error = msg["error"]
        except BaseException:  # Ctrl-C or a parent-side error: the launcher stops its workers on SIGTERM
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        code = proc.wait()
    if code != 0 or result is None:
        detail = error or f"the launcher exited with code {code}; see {stage_dir / 'launch.log'}"
        raise StageError(f"{stage} ({processes} processes): {detail}")
    return result


def launched_stage_fns(processes: int, accelerate_config: Path | None = None,
                       threads: int | None = None) -> dict[str, Any]:
    """Stage functions (run.execute's ``stage_fns``) that launch each training stage in ``processes`` workers."""
    def make(stage: str):
        return lambda ctx: launch(ctx, stage, ctx.resume, processes, accelerate_config, threads)

    return {s: make(s) for s in TRAINING_STAGES}


# -- worker side -----------------------------------------------------------------------------------------------
def _emit(**msg: Any) -> None:
    sys.stdout.write(PREFIX + json.dumps(msg, default=str) + "\n")
    sys.stdout.flush()


class _Task(TaskHandle):
    def __init__(self, description: str, total: float | None):
        self.description, self.total, self.completed = description, total, 0.0

    def advance(self, n: float = 1) -> None:
        self.update(completed=self.completed + n)

    def update(self, completed: float | None = None, description: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        _emit(task=self.description, total=self.total, completed=completed, description=description)


class PipeReporter(Reporter):
    """Rank 0's reporter: notes and progress go to the parent as ``@@thinktune`` lines."""

    @contextlib.contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[TaskHandle]:
        t = _Task(description, total)
        t.update(completed=0)
        yield t

    def note(self, message: str) -> None:
        _emit(note=message)


def _exit_with_parent() -> None:
    """Stop this worker within a second of the ``thinktune run`` that launched it dying (kill -9 included).

    torchrun starts each worker in its own session, so killing the CLI's process group leaves them running; an
    orphan still training would write into the run directory while the re-run resumes it.
    """
    import threading
    import time

    pid = int(os.environ.get("THINKTUNE_PARENT_PID", "0"))
    if not pid:
        return

    def alive() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:  # a killed parent not yet reaped is a zombie: dead for our purpose
            return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except (OSError, IndexError):
            return True

    def watch() -> None:
        while alive():
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="thinktune-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import logging

    from thinktune import distributed
    from thinktune.config import stage_row
    from thinktune.context import StageContext, read_run_recipe
    from thinktune.progress import set_reporter

    parser = argparse.ArgumentParser(prog="python -m thinktune.stages.worker")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("stage", choices=TRAINING_STAGES)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    _exit_with_parent()
    main_rank = distributed.is_main()
    logging.basicConfig(level=logging.WARNING if main_rank else logging.ERROR)
    for noisy in ("transformers", "datasets", "trl", "accelerate", "peft"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    try:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        ctx = StageContext(args.run_dir, read_run_recipe(args.run_dir), args.stage, resume=args.resume)
        distributed.init()
        if main_rank:
            set_reporter(PipeReporter())
        result = stage_row(args.stage).function()(ctx)
        distributed.barrier()
        if main_rank:
            _emit(result={**result, "processes": distributed.world_size(),
                          "threads_per_process": torch.get_num_threads()})
        return 0
    except ThinktuneError as e:
        _emit(error=str(e), rank=distributed.rank())
        return 1
    except Exception as e:  # a bug: keep the traceback in launch.log, the message for the user
        import traceback

        traceback.print_exc()
        _emit(error=f"rank {distributed.rank()}: {type(e).__name__}: {e}", rank=distributed.rank())
        return 1


if __name__ == "__main__":
    sys.exit(main())
