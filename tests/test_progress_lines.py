"""Progress in a log or a pipe (issue 21, point 3): long work used to print nothing until it ended when stderr was not
a terminal, while a library's tqdm bar (the GGUF conversion) flooded the log."""

import io
import os
import subprocess
import sys
import time

from rich.console import Console

from thinktune.cli.console import RichReporter


def test_a_task_writes_rate_limited_lines_with_step_loss_and_eta(monkeypatch):
    monkeypatch.setenv("THINKTUNE_PROGRESS_INTERVAL", "0.1")
    buf = io.StringIO()
    rep = RichReporter(Console(file=buf, force_terminal=False, width=200))
    with rep.task("sft", total=20) as t:
        for step in range(20):
            time.sleep(0.05)
            t.update(completed=step + 1, description=f"sft loss={1 / (step + 1):.3g}")
    lines = buf.getvalue().splitlines()
    ticks = [line for line in lines if "elapsed" in line and "done" not in line]
    assert lines[0].strip() == "sft: started (20 steps)"
    assert len(ticks) >= 4, lines  # ~1 s of work at one line per 0.1 s
    assert all("loss=" in line and "ETA" in line for line in ticks[1:-1]), ticks
    assert len(ticks) <= 12, "rate-limited: not one line per update"
    assert lines[-1].startswith("  sft loss=0.05: 20/20 (100%)") and lines[-1].endswith("done")


def test_a_failed_task_says_where_it_stopped(monkeypatch):
    monkeypatch.setenv("THINKTUNE_PROGRESS_INTERVAL", "5")
    buf = io.StringIO()
    try:
        with RichReporter(Console(file=buf, force_terminal=False)).task("grpo", total=10) as t:
            t.advance(3)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert buf.getvalue().splitlines()[-1] == "  grpo: stopped at 3"


def test_library_tqdm_bars_are_quiet_unless_verbose():
    code = ("import sys; from thinktune.cli.console import setup_logging; setup_logging({v})\n"
            "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='Converting GGUF tensors'): pass")
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}  # an in-process CLI test may have set it
    quiet = subprocess.run([sys.executable, "-c", code.format(v=False)], capture_output=True, text=True, env=env)
    loud = subprocess.run([sys.executable, "-c", code.format(v=True)], capture_output=True, text=True, env=env)
    assert quiet.returncode == loud.returncode == 0
    assert "Converting" not in quiet.stderr and "Converting" in loud.stderr


def test_the_default_interval_gives_a_two_minute_stage_at_least_four_lines(monkeypatch):
    from thinktune.cli.console import progress_interval

    monkeypatch.delenv("THINKTUNE_PROGRESS_INTERVAL", raising=False)
    assert progress_interval() <= 30 and 120 // progress_interval() >= 4
    monkeypatch.setenv("THINKTUNE_PROGRESS_INTERVAL", "soon")
    assert progress_interval() == 20.0  # a bad value falls back to the default rather than failing a run
