"""``thinktune rewards …``: score completions with rewards, and probe rewards with reward-hacking completions.

Routing and rendering only; the work lives in :mod:`thinktune.rewards`::

    thinktune rewards score outputs.jsonl --rewards correct,format --output scores.jsonl
    thinktune rewards score outputs.jsonl --rewards correct --set correct.extractor=boxed -o scores.jsonl
    thinktune rewards probe recipes/quickstart.yaml
    thinktune rewards probe --rewards correct,format=0.1,overlong=0.5 --data my_items.jsonl

``score`` reads rows that are canonical records plus a ``completion`` field and writes one row per input: ``id`` and
one key per reward. ``probe`` exits 1 when any probe beats the rule (rewards/probes.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from thinktune.cli.console import command_group, console, out, setup_logging, user_errors

rewards_app = command_group("Score completions with rewards; probe rewards with reward-hacking completions.")

RewardsOpt = Annotated[str | None, typer.Option(
    "--rewards", "-r", help="Comma-separated rewards, each NAME or NAME=WEIGHT (built-in or module:function).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="A reward setting, REWARD.KEY=VALUE (YAML value), e.g. correct.extractor=boxed. Repeatable.")]
WorkersOpt = Annotated[int, typer.Option(help="Reward worker processes (0 = in-process, no isolation).")]
DeadlineOpt = Annotated[float, typer.Option(help="Seconds one reward call may take before its worker is killed.")]


def parse_reward_list(text: str, settings: list[str] | None = None) -> list[Any]:
    """``"correct,format=0.1"`` + ``["correct.extractor=boxed"]`` → RewardSpecs (RewardError on bad input)."""
    from thinktune.config import RewardSpec
    from thinktune.rewards.library import RewardError
    from thinktune.safe_yaml import load_yaml

    specs: list[RewardSpec] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, weight = part.partition("=")
        try:
            specs.append(RewardSpec(fn=name.strip(), weight=float(weight) if weight else 1.0))
        except ValueError:
            raise RewardError(f"--rewards: bad weight in {part!r} (expected NAME=NUMBER)") from None
    if not specs:
        raise RewardError("--rewards names no reward")
    for item in settings or []:
        key, eq, value = item.partition("=")
        reward, dot, setting = key.rpartition(".")
        if not eq or not dot or not setting:
            raise RewardError(f"--set: expected REWARD.KEY=VALUE, got {item!r}")
        matches = [s for s in specs if s.fn == reward]
        if not matches:
            raise RewardError(f"--set {item!r}: {reward!r} is not one of --rewards ({', '.join(s.fn for s in specs)})")
        for s in matches:
            s.kwargs[setting] = load_yaml(value, f"--set {key}")
    return specs


@rewards_app.command("score")
def score_cmd(
    data: Annotated[Path, typer.Argument(help="JSONL rows: a canonical record plus a 'completion' field.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write {id, <reward>: value} rows.")],
    rewards: RewardsOpt = "correct,format",
    settings: SetOpt = None,
    think_prefilled: Annotated[bool, typer.Option(
        help="The prompt pre-filled the think tag (R1-style templates): completions start inside it.")] = False,
    workers: WorkersOpt = 2,
    deadline: DeadlineOpt = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Score completions in a file with rewards, so you can test them on your own outputs before training."""
    from rich.table import Table

    from thinktune.data.records import write_jsonl
    from thinktune.progress import reporter
    from thinktune.rewards.library import REWARDS
    from thinktune.rewards.runner import RewardRunner, read_scored_rows

    setup_logging(verbose)
    with user_errors():
        specs = parse_reward_list(rewards or "", settings)
        if think_prefilled:
            for s in specs:
                if s.fn in REWARDS and s.fn != "overlong":
                    s.kwargs.setdefault("think_prefilled", True)
        records, completions = read_scored_rows(data)
        with RewardRunner(specs, max_error_fraction=1.0, workers=workers, deadline=deadline) as runner:
            with reporter().task("scoring", total=len(specs) * len(records)) as bar:
                columns = runner.score_all(completions, records, on_advance=bar.advance)
            names, counts = runner.names, runner.counts
        rows = [{"id": rec.id, **{n: col[j] for n, col in zip(names, columns)}} for j, rec in enumerate(records)]
        write_jsonl(output, rows)

    table = Table(title=f"{len(records)} completions from {data}")
    for col in ("reward", "mean", "ok", "none", "errors", "timeouts"):
        table.add_column(col, justify="left" if col == "reward" else "right")
    for name, col in zip(names, columns):
        scored = [v for v in col if v is not None]
        c = counts[name]
        table.add_row(name, f"{sum(scored) / len(scored):.3f}" if scored else "—", str(c["ok"]), str(c["none"]),
                      str(c["error"]), str(c["timeout"]))
    out.print(table)
    console.print(f"wrote {output}")


@rewards_app.command("probe")
def probe_cmd(
    recipe: Annotated[Path | None, typer.Argument(help="Recipe whose grpo.rewards to probe.")] = None,
    rewards: RewardsOpt = None,
    settings: SetOpt = None,
    data: Annotated[Path | None, typer.Option(help="Canonical JSONL items to build probes from.")] = None,
    items: Annotated[int, typer.Option(help="How many items to build probes from.")] = 12,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the full report as JSON.")] = None,
    workers: WorkersOpt = 2,
    deadline: DeadlineOpt = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the reward-hacking probes against a recipe's rewards (or --rewards); exit 1 on any violation."""
    from rich.markup import escape
    from rich.table import Table

    from thinktune.io import atomic_write_text
    from thinktune.rewards.library import RewardError
    from thinktune.rewards.probes import probe_items, probe_rewards

    setup_logging(verbose)
    with user_errors():
        loaded = None
        fmt = None
        if recipe is not None:
            from thinktune.config import load_recipe

            loaded = load_recipe(recipe)
            fmt = loaded.format.completion_format()
        if rewards:
            specs = parse_reward_list(rewards, settings)
        elif loaded is not None:
            if loaded.grpo is None:
                raise RewardError(f"{recipe}: no grpo block, so no rewards to probe; pass --rewards")
            specs = [s.model_copy(deep=True) for s in loaded.grpo.rewards]
            if settings:
                raise RewardError("--set applies to --rewards; edit the recipe's grpo.rewards instead")
        else:
            raise RewardError("give a RECIPE or --rewards")
        records, source = probe_items(loaded, data, max(items * 2, items + 8))
        try:
            kwargs = {"fmt": fmt} if fmt is not None else {}
            report = probe_rewards(specs, records, max_items=items, workers=workers, deadline=deadline, **kwargs)
        except ValueError as e:
            raise RewardError(str(e)) from None

    names = report.rewards
    table = Table(title=f"reward probes: {report.items} items from {source}; rewards "
                        + ", ".join(f"{n}×{w:g}" for n, w in zip(names, report.weights)))
    for col in ["probe", "rule", "total", *names, "status"]:
        table.add_column(escape(col), justify="left" if col in ("probe", "rule", "status") else "right")
    table.add_row("honest correct", "", f"{report.honest_correct:.3f}", *[""] * len(names), "reference")
    table.add_row("honest wrong", "", f"{report.honest_wrong:.3f}", *[""] * len(names), "reference")
    colour = {"ok": "green", "unguarded": "yellow", "VIOLATION": "bold red", "error": "bold red"}
    for row in report.rows:
        table.add_row(row.probe, f"{row.rule} ({row.tag})", f"{row.mean_total:.3f}",
                      *[f"{row.per_reward[n]:.3f}" for n in names], f"[{colour[row.status]}]{row.status}[/]")
    out.print(table)
    for note in report.notes[:10]:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report.to_dict(), indent=2) + "\n")
    if not report.ok:
        console.print("[bold red]" + escape(report.summary()) + "[/]", highlight=False)
        raise typer.Exit(1)
    console.print("[green]" + escape(report.summary()) + "[/]", highlight=False)
