"""docs/EXTENDING.md's four examples — a reward, a task, a training stage, an audit metric — run exactly as written.

Each code block of the page starts with ``# file: <where it goes>``; the blocks are extracted from the page, so the
page cannot drift from what works. The stage example is applied to a copy of the package (its module, its config
class, one row of the stage table) and its own test runs the whole pipeline on a tiny model there.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```(?:python|yaml)\n# file: ([^\n]+)\n(.*?)```", re.S)


def blocks() -> dict[str, str]:
    found = {name.strip(): code for name, code in BLOCK.findall((ROOT / "docs" / "EXTENDING.md").read_text())}
    assert len(found) >= 11, sorted(found)
    return found


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """The page's own modules and YAML snippets written to a directory on sys.path."""
    where = tmp_path_factory.mktemp("examples")
    for name, code in blocks().items():
        if "/" not in name and "," not in name:
            (where / name).write_text(code)
    sys.path.insert(0, str(where))
    yield where
    sys.path.remove(str(where))
    for mod in ("my_rewards", "my_tasks", "register_task", "my_metrics"):
        sys.modules.pop(mod, None)


def test_the_reward_pays_short_correct_reasoning_and_passes_the_probes(examples):
    from my_rewards import brevity

    from thinktune.config import GRPOStage, RewardSpec
    from thinktune.data.records import Record
    from thinktune.formatting import render
    from thinktune.rewards.probes import default_items, probe_rewards
    from thinktune.rewards.runner import RewardRunner

    rec = Record(id="r", question="What is 2 + 3?", answer="5")
    short, long = render("2 + 3 = 5", "5"), render("2 + 3 = 5\n" * 80, "5")
    assert brevity(short, rec) == 1.0 and 0.0 <= brevity(long, rec, max_chars=400) < 1.0
    assert brevity(render("2 + 3 = 6", "6"), rec) == 0.0
    assert brevity(short, Record(id="u", question="?", answer="x", answerable=False)) is None
    specs = GRPOStage(**yaml.safe_load((examples / "rewards.yaml").read_text())["grpo"]).rewards
    assert specs[-1] == RewardSpec(fn="my_rewards:brevity", weight=0.2, kwargs={"max_chars": 300})
    with RewardRunner(specs, workers=1) as runner:  # imported by name in a spawned worker process
        assert runner.score(2, [short, long], [rec, rec]) == [1.0, 0.0]
    report = probe_rewards(specs, default_items(), workers=0, max_items=4)
    assert report.ok, report.summary()


def test_the_task_generates_verifies_and_feeds_the_data_stage(examples, tmp_path, monkeypatch):
    from thinktune.config import Recipe
    from thinktune.data import tasks
    from thinktune.data.answers import grade
    from thinktune.data.records import read_records
    from thinktune.run import execute
    from thinktune.stages import data as data_stage

    monkeypatch.setattr(tasks, "TASKS", dict(tasks.TASKS))  # the registration below stays in this test
    sys.modules.pop("register_task", None)
    import register_task  # noqa: F401  (the page's registration)

    task = tasks.get_task("mod_sum")
    a, b = task.generate(5, seed=3, modulus=11), task.generate(5, seed=3, modulus=11)
    assert a == b and all(int(r.answer) < 11 for r in a)
    assert all(grade(r, r.answer) for r in a) and grade(a[0], str(int(a[0].answer) + 11)) is False
    recipe = Recipe.model_validate({"name": "t", "output_dir": str(tmp_path), "model": {"tiny": {}},
                                    "data": {"task": {"name": "mod_sum", "n_train": 50, "n_eval": 10,
                                                      "knobs": {"modulus": 11}}}})
    state = execute(recipe, stage_fns={"data": data_stage.run_stage, "base": lambda ctx: {}})
    train = read_records(state.output_path("data") / "train.jsonl")
    assert len(train) == 50 and {r.task for r in train} == {"mod_sum"}


def test_the_audit_metric_is_computed_aggregated_and_headlined(examples):
    from thinktune.audit.battery import audit_completions, headline
    from thinktune.config import AuditStage, TinyModelConfig
    from thinktune.data.tasks import get_task
    from thinktune.formatting import DEFAULT_FORMAT, chat_prompt, render
    from thinktune.models import build_tiny

    records = get_task("chain_arith").generate(6, seed=0, max_ops=3, trace="steps")
    _, tok = build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                                        vocab_size=280), [render(r.reasoning, r.answer) for r in records], seed=0)
    cfg = AuditStage(tests=[], bootstrap=50, **yaml.safe_load((examples / "audit.yaml").read_text())["audit"])
    prompts = [chat_prompt(tok, r.question) for r in records]
    agg, rows = audit_completions(None, tok, records, prompts, [render(r.reasoning, r.answer) for r in records], cfg,
                                  DEFAULT_FORMAT, seed=0)
    per_item = [row["metrics"]["steps_per_operation"] for row in rows]
    assert per_item == [1.0] * 6  # the task writes one line per operation
    m = agg["metrics"]["steps_per_operation"]
    assert (m["mean"], m["n"], m["label"]) == (1.0, 6, "steps per operation")
    assert headline(agg)["steps per operation"] == 1.0


def _apply(block_name: str, code: str, root: Path) -> None:
    target, _, where = block_name.partition(", ")
    path = root / target
    if not where:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
        return
    lines = path.read_text().splitlines(keepends=True)
    if where.startswith("above"):  # above the section comment and its separator line
        anchor = re.search(r'"(.+)"', where).group(1)
        i = next(k for k, line in enumerate(lines) if line.strip() == anchor) - 1
    else:  # in STAGES after the <stage> row
        stage = re.search(r"after the (\w+) row", where).group(1)
        i = next(k for k, line in enumerate(lines) if line.lstrip().startswith(f'Stage("{stage}"')) + 1
    path.write_text("".join(lines[:i]) + code + ("\n\n" if where.startswith("above") else "") + "".join(lines[i:]))


@pytest.mark.slow
def test_adding_a_stage_is_its_module_a_config_class_a_table_row_and_a_test(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", copy)
    stage_blocks = {k: v for k, v in blocks().items() if k.startswith(("src/", "tests/")) or k == "rloo.yaml"}
    assert len(stage_blocks) == 5  # the module, the config class, the table row, the recipe, the test
    for name, code in stage_blocks.items():
        _apply(name, code, copy)
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "OMP_NUM_THREADS": "1"}
    lint_imports = str(Path(sys.executable).with_name("lint-imports"))  # the venv's, activated or not
    lint = subprocess.run([lint_imports], cwd=copy, env=env, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-2000:]  # the new stage keeps every import contract
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/stages/test_rloo.py"],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
    assert not (ROOT / "src" / "thinktune" / "stages" / "rloo.py").exists()  # the real package is untouched
