"""The bottom of the CLI: the two consoles, user-facing errors, logging set-up and the rich progress reporter.

Every command module imports from here and from the library, never from another command module. Every
user-facing error (:class:`thinktune.errors.ThinktuneError`) is printed as a short message with exit code 1 — never a
traceback. ``THINKTUNE_DEBUG=1`` re-raises for debugging.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator

import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from thinktune.errors import ThinktuneError
from thinktune.progress import Reporter, TaskHandle, set_reporter

console = Console(stderr=True, soft_wrap=True)  # messages and errors; never wrap an error message mid-phrase
out = Console()  # results


class _WrappingGroup(TyperGroup):
    """Lists each command with its whole first sentence, wrapped (click cuts it to fit one line, with "...")."""

    def format_commands(self, ctx, formatter) -> None:
        rows = [(name, cmd.get_short_help_str(limit=10_000)) for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def command_group(help: str, cls: type[TyperGroup] | None = None, **kwargs) -> typer.Typer:
    """A command group whose help is click's plain layout, wrapped at the terminal width: rich's option panels cut
    option names and defaults at 80 columns (``--require-reaso…``). ``cls``: a group class with routing of its own,
    given the same help layout."""
    group = _WrappingGroup if cls is None else type(cls.__name__, (cls, _WrappingGroup), {})
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, cls=group, **kwargs)


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


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class _PlainTask(TaskHandle):
    """Progress as plain lines for a log or a pipe: a line when the task starts, one every ``interval`` seconds
    while it runs (from a timer thread, so a slow step still shows life) and one when it ends."""

    def __init__(self, console: Console, description: str, total: float | None, interval: float):
        self.console, self.description, self.total, self.interval = console, description, total, interval
        self.completed = 0.0
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def advance(self, n: float = 1) -> None:
        self.completed += n

    def update(self, completed: float | None = None, description: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if description is not None:
            self.description = description

    def line(self, final: bool = False) -> str:
        elapsed = time.monotonic() - self.t0
        parts = [f"{self.completed:g}/{self.total:g} ({self.completed / self.total:.0%})"
                 if self.total else f"{self.completed:g}", f"{_duration(elapsed)} elapsed"]
        if not final and self.total and 0 < self.completed < self.total:
            parts.append(f"ETA {_duration(elapsed * (self.total - self.completed) / self.completed)}")
        return f"  {self.description}: " + (" · ".join(parts) + " · done" if final else " · ".join(parts))

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self.console.print(self.line(), highlight=False, markup=False)

    def __enter__(self) -> _PlainTask:
        self.console.print(f"  {self.description}: started" + (f" ({self.total:g} steps)" if self.total else ""),
                           highlight=False, markup=False)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.console.print(self.line(final=exc[0] is None) if exc[0] is None else
                           f"  {self.description}: stopped at {self.completed:g}", highlight=False, markup=False)


def progress_interval() -> float:
    """Seconds between plain progress lines (``THINKTUNE_PROGRESS_INTERVAL``; default 20, so a log shows life
    at least every 30 s)."""
    try:
        return max(0.05, float(os.environ.get("THINKTUNE_PROGRESS_INTERVAL", "20")))
    except ValueError:
        return 20.0


class RichReporter(Reporter):
    """Progress on stderr: rich bars on a terminal, rate-limited plain lines in a log or a pipe (step, the
    description's loss / reward, elapsed time, ETA)."""

    def __init__(self, console: Console):
        self.console = console

    @contextlib.contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[TaskHandle]:
        if not self.console.is_terminal and os.environ.get("THINKTUNE_PROGRESS") != "1":
            with _PlainTask(self.console, description, total, progress_interval()) as plain:
                yield plain
            return
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False)
        with progress:
            task_id = progress.add_task(description, total=total)
            yield _RichTask(progress, task_id)

    def note(self, message: str) -> None:
        logging.getLogger("thinktune").info(message)
        self.console.print(f"[bold cyan]›[/] {escape(message)}", highlight=False)


@contextlib.contextmanager
def progress_shown() -> Iterator[None]:
    """Library progress and notes go to the terminal (a rich reporter) while the block runs."""
    prev = set_reporter(RichReporter(console))
    try:
        yield
    finally:
        set_reporter(prev)


def fail(err: BaseException) -> None:
    """Print ``err`` as one line and exit 1 (re-raised with ``THINKTUNE_DEBUG=1``)."""
    if os.environ.get("THINKTUNE_DEBUG"):
        raise err
    console.print("[bold red]error:[/] " + escape(str(err)), highlight=False)
    raise typer.Exit(1)


def error_exit(message: str, code: int = 1) -> None:
    """A usage error found by the CLI itself: one line, exit ``code``."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """User-facing errors become one line and exit 1; Ctrl-C says how to resume and exits 130."""
    try:
        yield
    except ThinktuneError as e:
        fail(e)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/] — run the same command again to resume")
        raise typer.Exit(130) from None


def setup_logging(verbose: bool) -> None:
    """INFO logs with ``--verbose``; otherwise the stack's warnings and progress bars are silenced."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        for noisy in ("transformers", "datasets", "trl", "accelerate", "peft"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")  # plain tqdm bars (transformers' GGUF conversion) flood a log
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
