"""The reward_model stage (TRL's RewardTrainer on people's labels), the ``reward_model`` reward GRPO trains
against, and DPO on the same labels file — one tiny run: SFT, then all three."""

import json
import math

import pytest

from tests.helpers.labelling import label_file_by_script, write_candidates
from tests.helpers.pipeline import reduced_recipe, run_dir, thinktune
from thinktune.config import load_recipe
from thinktune.data.labels import read_labels
from thinktune.errors import RecipeError
from thinktune.rewards.learned import RewardModelScorer
from thinktune.stages.reward_model import is_held_out

REWARD_MODEL = {"max_steps": 6, "examples_per_step": 8, "micro_batch_size": 8, "learning_rate": 1.0e-3,
                "save_steps": 3, "logging_steps": 1, "max_length": 256, "held_out": 0.25}


def test_held_out_split_is_by_prompt_stable_and_near_its_fraction():
    prompts = [f"prompt {i}" for i in range(4000)]
    held = [p for p in prompts if is_held_out(p, 0, 0.2)]
    assert 0.18 < len(held) / len(prompts) < 0.22
    assert held == [p for p in prompts if is_held_out(p, 0, 0.2)]  # stable
    assert held != [p for p in prompts if is_held_out(p, 1, 0.2)]  # seeded


def test_a_reward_model_reward_needs_a_path_or_the_stage(tmp_path):
    rewards = [{"fn": "reward_model", "weight": 1.0}]
    with pytest.raises(RecipeError, match="grpo.rewards.0: reward_model needs kwargs.path"):
        load_recipe(reduced_recipe(tmp_path, "nopath", grpo={"rewards": rewards}))
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"label_id": "x" * 8, "item": "q", "annotator": "a", "question": "Q",
                                  "candidates": [{"id": "0", "text": "a"}, {"id": "1", "text": "b"}],
                                  "choice": "tie"}) + "\n")
    with pytest.raises(RecipeError, match=r"reward_model.pairs_file: .*labels.jsonl: no preference pairs in 1 labels"):
        load_recipe(reduced_recipe(tmp_path, "ties", grpo={"rewards": rewards},
                                   reward_model={"pairs_file": str(labels)}))


@pytest.fixture(scope="module")
def rm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    write_candidates(root / "cands.jsonl", 48, xss=False)
    n = label_file_by_script(root / "cands.jsonl", root / "labels.jsonl", ("ana", "ben"), overlap=0.25)
    recipe = reduced_recipe(
        root, "rm", report=None, audit={"max_items": 8},
        reward_model={"pairs_file": str(root / "labels.jsonl"), **REWARD_MODEL},
        grpo={"max_steps": 2, "rewards": [{"fn": "reward_model", "weight": 1.0}, {"fn": "format", "weight": 0.1}],
              "reward_workers": 1, "reward_deadline": 300, "reward_probes": False,
              "min_reward_model_accuracy": None},  # 48 toy items: the mechanics, not a reward model worth training on
        dpo={"pairs": "file", "pairs_file": str(root / "labels.jsonl"), "max_steps": 2, "save_steps": 2,
             "logging_steps": 1})
    proc = thinktune("run", str(recipe))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return recipe, n


@pytest.mark.slow
def test_reward_model_stage_trains_on_labels_and_measures_its_held_out_accuracy(rm_run):
    recipe, n_labels = rm_run
    root = run_dir(recipe)
    labels = read_labels(recipe.parent / "labels.jsonl")
    assert len(labels) == n_labels >= 48
    stats = json.loads((root / "reward_model" / "pairs_stats.json").read_text())
    assert stats["source"] == "labels" and stats["labels"] == n_labels and stats["agreement"]["items"] > 0
    result = json.loads((root / "manifest.json").read_text())["stages"]["reward_model"]["result"]
    assert result["steps"] == 6 and result["pairs"] + result["held_out_pairs"] == stats["pairs"]
    assert result["agreement"] == {k: stats["agreement"][k] for k in ("items", "observed", "kappa")}
    losses = [m["loss"] for m in map(json.loads, (root / "reward_model" / "metrics.jsonl").read_text().splitlines())
              if "loss" in m]
    assert len(losses) == 6 and losses[0] == pytest.approx(math.log(2), abs=0.1)  # Bradley-Terry at a fresh head

    held = json.loads((root / "reward_model" / "held_out.json").read_text())
    assert held["pairs"] == result["held_out_pairs"] and held["accuracy"] == result["held_out_accuracy"]
    # the accuracy is the saved model's, scored as the reward scores: recompute it from the pairs
    from thinktune.data.pairs import load_pairs
    from thinktune.formatting import chat_prompt

    scorer = RewardModelScorer(root / "reward_model" / "final")
    pairs = [p for p in load_pairs(recipe.parent / "labels.jsonl")[0]
             if is_held_out(chat_prompt(scorer.tokenizer, p["question"], scorer.instruction, scorer.system), 0, 0.25)]
    assert len(pairs) == held["pairs"]
    chosen = scorer.score([p["question"] for p in pairs], [p["chosen"] for p in pairs])
    rejected = scorer.score([p["question"] for p in pairs], [p["rejected"] for p in pairs])
    assert [[round(c, 4), round(r, 4)] for c, r in zip(chosen, rejected)] == held["scores"]
    assert held["accuracy"] == sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)


@pytest.mark.slow
def test_grpo_scores_its_rollouts_with_the_runs_reward_model(rm_run):
    recipe, _ = rm_run
    root = run_dir(recipe)
    rows = [json.loads(line) for f in sorted((root / "grpo" / "completions").glob("*.jsonl"))
            for line in f.read_text().splitlines()]
    assert rows
    from thinktune.data.records import read_records

    questions = {r.id: r.question for r in read_records(root / "data" / "train.jsonl")}
    scorer = RewardModelScorer(root / "reward_model" / "final")
    sample = rows[:6]
    want = scorer.score([questions[r["id"]] for r in sample], [r["completion"] for r in sample])
    got = [r["rewards"]["reward_model"] for r in sample]
    assert got == pytest.approx(want, abs=1e-4)
    assert len({round(v, 6) for v in (r["rewards"]["reward_model"] for r in rows)}) > 1  # a real score, not a constant
    audited = [json.loads(x) for x in (root / "audit" / "grpo" / "examples.jsonl").read_text().splitlines()]
    assert all(isinstance(r["rewards"]["reward_model"], float) for r in audited)  # the audit scores with it too


@pytest.mark.slow
def test_dpo_trains_on_the_same_labels_file(rm_run):
    recipe, n_labels = rm_run
    root = run_dir(recipe)
    stats = json.loads((root / "dpo" / "pairs_stats.json").read_text())
    rm_stats = json.loads((root / "reward_model" / "pairs_stats.json").read_text())
    assert stats == rm_stats and stats["labels"] == n_labels
    assert len((root / "dpo" / "pairs.jsonl").read_text().splitlines()) == stats["pairs"]
    result = json.loads((root / "manifest.json").read_text())["stages"]["dpo"]["result"]
    assert result["steps"] == 2
    assert list(json.loads((root / "results.json").read_text())["models"]) == ["base", "sft", "grpo", "dpo"]


@pytest.mark.slow
def test_the_report_shows_label_counts_agreement_and_the_reward_models_accuracy(rm_run, tmp_path):
    recipe, n_labels = rm_run
    root = run_dir(recipe)
    proc = thinktune("report", str(root), "-o", str(tmp_path / "report.html"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = (tmp_path / "report.html").read_text()
    result = json.loads((root / "manifest.json").read_text())["stages"]["reward_model"]["result"]
    from thinktune.report.charts import fmt_num

    assert f"labels={n_labels}" in html  # the stage's row in the run summary
    assert f"agreement (items={result['agreement']['items']}, observed={fmt_num(result['agreement']['observed'])}" in html
    assert f"held_out_accuracy={fmt_num(result['held_out_accuracy'])}" in html


@pytest.mark.slow
def test_grpo_refuses_a_reward_model_not_shown_better_than_the_threshold(rm_run, tmp_path):
    import shutil

    recipe, _ = rm_run
    root = run_dir(recipe)
    shutil.copytree(root, tmp_path / root.name)  # the module's run stays as it is for the other tests
    recorded = json.loads((root / "reward_model" / "final" / "reward_model.json").read_text())["held_out"]
    assert recorded["accuracy"] == json.loads((root / "reward_model" / "held_out.json").read_text())["accuracy"]
    proc = thinktune("run", str(recipe), f"output_dir={tmp_path}", "grpo.min_reward_model_accuracy=0.99",
                     "--restart-from", "grpo")
    assert proc.returncode != 0
    err = " ".join(proc.stderr.split())
    assert "not shown better than 99% on its held-out pairs" in err and "Traceback" not in proc.stderr
    assert f"pairwise accuracy {recorded['accuracy']:.1%}" in err
