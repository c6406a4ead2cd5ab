"""The ``thinktune`` command line (typer + rich). Routing and rendering only; the work lives in the library.

Every user-facing error (:class:`thinktune.errors.ThinktuneError`) is printed as a short message with exit
code 1 — never a traceback. ``THINKTUNE_DEBUG=1`` re-raises for debugging.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from thinktune.cli_audit import audit_cmd
from thinktune.cli_data import data_app
from thinktune.cli_decoding import register as register_decoding
from thinktune.cli_experiments import experiments_app
from thinktune.cli_report import report_cmd
from thinktune.cli_rewards import rewards_app
from thinktune.errors import ThinktuneError
from thinktune.progress import Reporter, TaskHandle, set_reporter

app = typer.Typer(help="Build custom reasoning models: curate, SFT, GRPO, audit.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
recipe_app = typer.Typer(help="Validate and inspect recipes.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")
register_decoding(app)
app.command("report")(report_cmd)
app.command("audit")(audit_cmd)
app.add_typer(rewards_app, name="rewards")
app.add_typer(data_app, name="data")
app.add_typer(experiments_app, name="experiments")

console = Console(stderr=True, soft_wrap=True)  # never wrap an error message mid-phrase
out = Console()


class _RichTask(TaskHandle):
    def __init__(self, progress: Progress, task_id):
        self.progress, self.task_id = progress, task_id

    def advance(self, n: float = 1) -> None:
        self.progress.advance(self.task_id, n)

    def update(self, completed: float | None = None, description: str | None = None) -> None:
        kwargs = {}
        if completed is not None:
            kwargs["completed"] = completed
        if description is not None:
            kwargs["description"] = description
        self.progress.update(self.task_id, **kwargs)


class RichReporter(Reporter):
    """Progress bars and notes on stderr."""

    def __init__(self, console: Console):
        self.console = console

    @contextlib.contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[TaskHandle]:
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
                            disable=not self.console.is_terminal and os.environ.get("THINKTUNE_PROGRESS") != "1")
        with progress:
            task_id = progress.add_task(description, total=total)
            yield _RichTask(progress, task_id)
        if not self.console.is_terminal:
            self.console.print(f"  {description}: done")

    def note(self, message: str) -> None:
        from rich.markup import escape

        logging.getLogger("thinktune").info(message)
        self.console.print(f"[bold cyan]›[/] {escape(message)}", highlight=False)


def _fail(err: BaseException) -> None:
    if os.environ.get("THINKTUNE_DEBUG"):
        raise err
    from rich.markup import escape

    console.print("[bold red]error:[/] " + escape(str(err)), highlight=False)
    raise typer.Exit(1)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except ThinktuneError as e:
        _fail(e)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/] — run the same command again to resume")
        raise typer.Exit(130) from None


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        for noisy in ("transformers", "datasets", "trl", "accelerate", "peft"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|trl|peft|torch)\.")
        try:
            import datasets
            import transformers

            datasets.disable_progress_bars()
            transformers.utils.logging.disable_progress_bar()
            transformers.utils.logging.set_verbosity_error()
        except ImportError:
            pass


RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file.")]
OverridesArg = Annotated[list[str] | None, typer.Argument(help="Dotted overrides, e.g. sft.learning_rate=1e-4.")]


@recipe_app.command("check")
def recipe_check(recipe: RecipeArg, overrides: OverridesArg = None) -> None:
    """Validate a recipe (keys, types, files it names) without running anything."""
    from thinktune.config import load_recipe

    with _user_errors():
        r = load_recipe(recipe, overrides or [])
    out.print(f"[green]ok[/]: {recipe} — stages: {', '.join(r.stages())}; run dir {r.run_dir()}")


@recipe_app.command("show")
def recipe_show(recipe: RecipeArg, overrides: OverridesArg = None) -> None:
    """Print the resolved recipe with every default filled in."""
    from thinktune.config import load_recipe, resolved_dict

    with _user_errors():
        r = load_recipe(recipe, overrides or [])
    out.print(yaml.safe_dump(resolved_dict(r), sort_keys=False), end="", highlight=False, markup=False)


@app.command("run")
def run_cmd(
    recipe: RecipeArg,
    overrides: OverridesArg = None,
    restart_from: Annotated[str | None, typer.Option("--restart-from", help="Redo this stage and every later one.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch intra-op threads (default: the recipe's `threads`, else all cores).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log library messages.")] = False,
    processes: Annotated[int | None, typer.Option(min=1, help="Train each training stage in N processes (torchrun: "
                                                              "gloo DDP on CPU, NCCL on GPUs; default 1, or the "
                                                              "accelerate config's num_processes); `threads` is per "
                                                              "process.")] = None,
    accelerate_config: Annotated[Path | None, typer.Option(
        "--accelerate-config", help="Launch training stages with this accelerate config (DeepSpeed, FSDP; "
                                    "recipes/accelerate/).")] = None,
) -> None:
    """Run a recipe's stages into runs/<name>/: skips complete stages, resumes an interrupted one."""
    _setup_logging(verbose)
    from thinktune.config import load_recipe
    from thinktune.run import default_stage_fns, execute

    with _user_errors():
        r = load_recipe(recipe, overrides or [])
        threads = threads or r.threads
        if threads:
            import torch

            torch.set_num_threads(threads)
        stage_fns = None
        if (processes or 1) > 1 or accelerate_config is not None:
            from thinktune.stages.worker import TRAINING_STAGES, check_processes, launched_stage_fns

            processes = check_processes(r, processes, accelerate_config)
            fns = default_stage_fns()
            stage_fns = {**fns, **launched_stage_fns(processes, accelerate_config, threads,
                                                     tuple(s for s in fns if s in TRAINING_STAGES))}
        prev = set_reporter(RichReporter(console))
        try:
            run = execute(r, restart_from=restart_from, stage_fns=stage_fns)
        finally:
            set_reporter(prev)
    _print_results(run.root)


def _print_results(root: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    table = Table(title=f"run {root}")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    table.add_column("result")
    for stage, rec in manifest["stages"].items():
        result = rec.get("result") or {}
        shown = ", ".join(f"{k}={v}" for k, v in result.items() if not isinstance(v, dict))
        table.add_row(stage, rec.get("status", "?"), f"{rec.get('seconds', 0):.1f}", shown[:90])
    out.print(table)
    results_path = root / "results.json"
    if results_path.exists():
        res = json.loads(results_path.read_text())
        t = Table(title=f"held-out accuracy ({res['eval_items']} items, greedy)")
        for col in ("model", "accuracy", "95% CI", "format", "tokens"):
            t.add_column(col, justify="right" if col != "model" else "left")
        for name, m in res["models"].items():
            lo, hi = m["accuracy_ci95"]
            t.add_row(name, f"{m['accuracy']:.1%}", f"{lo:.1%}–{hi:.1%}", f"{m['format_rate']:.1%}",
                      f"{m['mean_completion_tokens']:.0f}")
        out.print(t)
        for c in res.get("changes", []):  # each model vs the model it was trained from, paired (audit/significance.py)
            lo, hi = c["ci95"]
            colour = "green" if c["significant"] and c["delta"] > 0 else "yellow"
            out.print(f"[{colour}]{c['before']} → {c['after']}: {100 * c['delta']:+.1f} points, paired 95 % CI "
                      f"{100 * lo:+.1f}…{100 * hi:+.1f}, {'significant' if c['significant'] else 'not significant'}[/]")
        out.print(f"results: {results_path}")


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (runs/<name>).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the standalone model.")],
    stage: Annotated[str | None, typer.Option(help="Which model (base, sft, dpo, grpo); default: the last one trained.")] = None,
    merge: Annotated[bool, typer.Option("--merge/--no-merge", help="Merge adapters into the weights.")] = True,
) -> None:
    """Write a run's model as a standalone checkpoint (safetensors, tokenizer, chat template) plain transformers loads."""
    from thinktune.export import export_model

    with _user_errors():
        written = export_model(run_dir, output, stage=stage, merge=merge)
    out.print(f"[green]exported[/] {written['stage']} → {written['path']} ({written['kind']})")


@app.command("version")
def version_cmd() -> None:
    """Print thinktune's version and the versions of the stack it runs on."""
    from thinktune.run import versions

    for k, v in versions().items():
        out.print(f"{k:14s} {v}")


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
