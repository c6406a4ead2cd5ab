"""``thinktune run``, ``thinktune recipe check|show``, ``thinktune export``, ``thinktune version``.

Routing and rendering only; the work lives in :mod:`thinktune.run`, :mod:`thinktune.config` and
:mod:`thinktune.export`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table

from thinktune.cli.console import command_group, out, progress_shown, setup_logging, user_errors

recipe_app = command_group("Validate and inspect recipes.")


RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file.")]
OverridesArg = Annotated[list[str] | None, typer.Argument(help="Dotted overrides, e.g. sft.learning_rate=1e-4.")]


@recipe_app.command("check")
def recipe_check(recipe: RecipeArg, overrides: OverridesArg = None) -> None:
    """Validate a recipe (keys, types, files it names) without running anything."""
    from thinktune.config import load_recipe

    with user_errors():
        r = load_recipe(recipe, overrides or [])
    out.print(f"[green]ok[/]: {recipe} — stages: {', '.join(r.stages())}; run dir {r.run_dir()}")


@recipe_app.command("show")
def recipe_show(recipe: RecipeArg, overrides: OverridesArg = None) -> None:
    """Print the resolved recipe with every default filled in."""
    from thinktune.config import load_recipe, resolved_dict

    with user_errors():
        r = load_recipe(recipe, overrides or [])
    out.print(yaml.safe_dump(resolved_dict(r), sort_keys=False), end="", highlight=False, markup=False)


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
    setup_logging(verbose)
    from thinktune.config import load_recipe
    from thinktune.run import execute

    with user_errors():
        r = load_recipe(recipe, overrides or [])
        threads = threads or r.threads
        if threads:
            import torch

            torch.set_num_threads(threads)
        stage_fns = None
        if (processes or 1) > 1 or accelerate_config is not None:
            from thinktune.stages.worker import check_processes, launched_stage_fns

            processes = check_processes(r, processes, accelerate_config)
            stage_fns = launched_stage_fns(processes, accelerate_config, threads)
        with progress_shown():
            state = execute(r, restart_from=restart_from, stage_fns=stage_fns)
    _print_results(state.root)


def _print_results(root: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    table = Table(title=f"run {root}")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    table.add_column("result", overflow="fold")  # wrapped at any width, never cut
    for stage, rec in manifest["stages"].items():
        result = rec.get("result") or {}
        shown = ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in result.items()
                          if not isinstance(v, dict))
        table.add_row(stage, rec.get("status", "?"), f"{rec.get('seconds', 0):.1f}", shown)
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
        _print_changes(res.get("changes", []))
        for name, st in res.get("sets", {}).items():  # extra held-out sets (audit.extra_sets)
            accs = ", ".join(f"{s} {m['accuracy']:.1%}" for s, m in st["models"].items())
            out.print(f"{name} ({st['items']} items, {st['file']}): {accs}")
            _print_changes(st["changes"], indent="  ")
        out.print(f"results: {results_path}")


def _print_changes(changes: list[dict], indent: str = "") -> None:
    """Each model vs the model it was trained from, paired on the same items (audit/significance.py)."""
    for c in changes:
        lo, hi = c["ci95"]
        colour = "green" if c["significant"] and c["delta"] > 0 else "yellow"
        out.print(f"{indent}[{colour}]{c['before']} → {c['after']}: {100 * c['delta']:+.1f} points, paired 95 % CI "
                  f"{100 * lo:+.1f}…{100 * hi:+.1f}, {'significant' if c['significant'] else 'not significant'}[/]")


def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (runs/<name>).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the standalone model.")],
    stage: Annotated[str | None, typer.Option(help="Which model (base, sft, dpo, grpo); default: the last one trained.")] = None,
    merge: Annotated[bool, typer.Option("--merge/--no-merge", help="Merge adapters into the weights.")] = True,
    dtype: Annotated[str, typer.Option(help="Weights written as fp32, bf16 or fp16 (merged models).")] = "fp32",
) -> None:
    """Write a run's model as a standalone checkpoint (safetensors, tokenizer, chat template, model card) that plain
    transformers loads."""
    from thinktune.export import export_model

    with user_errors():
        written = export_model(run_dir, output, stage=stage, merge=merge, dtype=dtype)
    out.print(f"[green]exported[/] {written['stage']} → {written['path']} ({written['kind']}"
              + (f", {written['dtype']}" if written["dtype"] else "") + ")")


def version_cmd() -> None:
    """Print thinktune's version and the versions of the stack it runs on."""
    from thinktune.run import versions

    for k, v in versions().items():
        out.print(f"{k:14s} {v}")
