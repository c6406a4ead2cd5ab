"""Atomic writes (issue 20): files follow the umask like open() does, and temps of killed writers are cleaned."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thinktune.cli import app
from thinktune.data.records import JsonlWriter
from thinktune.io import atomic_write_text, commit_dir, staging_dir


@pytest.fixture
def umask():
    def set_(mask: int) -> None:
        os.umask(mask)
    old = os.umask(0o022)
    yield set_
    os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask, mask):
    """mkstemp creates 0600: a report meant to be shared was unreadable by others."""
    from thinktune.io import FileGroup

    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "x")
    with JsonlWriter(tmp_path / "b.jsonl") as w:
        w.write({"x": 1})
    with FileGroup([tmp_path / "c.jsonl"], last=tmp_path / "c.stats") as g:
        g.write_text(tmp_path / "c.jsonl", "1\n")
        g.write_text(tmp_path / "c.stats", "{}\n")
    reference = tmp_path / "ref"
    reference.write_text("x")  # what open() gives under this umask
    for name in ("a.txt", "b.jsonl", "c.jsonl", "c.stats"):
        assert mode(tmp_path / name) == mode(reference) == 0o666 & ~mask, name


def test_report_html_is_readable_by_others_under_umask_022(tmp_path, umask):
    from tests.helpers.report_runs import make_run  # a synthetic run directory

    root = make_run(tmp_path)
    result = CliRunner().invoke(app, ["report", str(root)])
    assert result.exit_code == 0, result.output
    assert mode(root / "report.html") == 0o644


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temps_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    from thinktune.io import _HOST

    target = tmp_path / "out.jsonl"
    dead = tmp_path / f".out.jsonl.tt{_HOST}-{_dead_pid()}.abcd1234.tmp"
    live = tmp_path / f".out.jsonl.tt{_HOST}-{os.getppid()}.abcd1234.tmp"
    other_host = tmp_path / f".out.jsonl.tt000000-{_dead_pid()}.abcd1234.tmp"
    users = tmp_path / ".out.jsonl.mine.tmp"
    for p in (dead, live, other_host, users):
        p.write_text("x")
    atomic_write_text(target, "new")
    assert not dead.exists() and live.exists() and other_host.exists() and users.exists()
    assert target.read_text() == "new"


def test_a_directory_a_killed_commit_moved_aside_is_put_back(tmp_path):
    from thinktune.io import sweep_temps

    target = tmp_path / "final"
    target.mkdir()
    (target / "w").write_text("old")
    os.replace(target, tmp_path / ".final.old")  # the kill came between commit_dir's two renames
    sweep_temps(tmp_path)
    assert (target / "w").read_text() == "old" and not (tmp_path / ".final.old").exists()
    tmp = staging_dir(target)
    (tmp / "w").write_text("new")
    commit_dir(tmp, target)
    assert (target / "w").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["final"]
