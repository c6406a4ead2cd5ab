"""Help texts and the run summary are readable at 80 columns (issue 21, point 10): rich's option panels cut names
and defaults (`--require-reaso…`, `--decontam-thre…`), and the run table cut its last column (`kl_referen`)."""

import json

import typer
from typer.testing import CliRunner

from thinktune.cli import app


def commands(group, path=()):
    for name, cmd in group.commands.items():
        yield (*path, name), cmd
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
            yield from commands(cmd, (*path, name))


def test_every_help_wraps_at_80_columns_and_names_every_option_in_full():
    runner = CliRunner()
    root = typer.main.get_command(app)
    checked = 0
    for path, cmd in [((), root), *commands(root)]:
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert res.exit_code == 0, (path, res.output)
        text = res.output
        cut = [line for line in text.splitlines() if line.rstrip().endswith(("…", "...")) and "Usage" not in line]
        assert not cut, (path, cut)
        too_long = [line for line in text.splitlines() if len(line) > 80]
        assert not too_long, (path, too_long)
        for param in cmd.params:
            for opt in param.opts + param.secondary_opts:
                if opt.startswith("--"):
                    assert opt in text, (path, opt)
        checked += 1
    assert checked > 30


def test_the_run_summary_table_wraps_its_result_column(tmp_path):
    from rich.console import Console

    from thinktune.cli import main

    result = {"steps": 40, "kl_reference": "the SFT model (no separate copy: adapter disabled)",
              "sections": ["warnings", "summary", "data", "training", "audit", "samples"]}
    (tmp_path / "manifest.json").write_text(json.dumps({"stages": {"grpo": {"status": "complete", "seconds": 331.5,
                                                                            "result": result}}}))
    narrow = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    old, main.out = main.out, narrow
    try:
        main._print_results(tmp_path)
    finally:
        main.out = old
    text = narrow.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    cell = " ".join(line.split("│")[-2].strip() for line in text.splitlines() if line.count("│") == 5)
    assert "kl_reference=the SFT model (no separate copy: adapter disabled)" in cell, text
    assert "sections=warnings,summary,data,training,audit,samples" in cell.replace(" ", ""), text
