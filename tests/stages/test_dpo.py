"""DPO stage: pair building (verifier-graded, one-sided questions skipped), pairs-file validation, recipe errors, an
end-to-end run added to a completed SFT run, and kill -9 resume (docs/ARCHITECTURE.md, "Crash safety and exact
resume")."""

import json
import math
import random
import shutil

import pytest

from tests.helpers.pipeline import kill_when, reduced_recipe, run_dir, start, thinktune, write_pairs
from thinktune.config import load_recipe
from thinktune.data.pairs import read_pairs_file
from thinktune.data.records import DataError, Record
from thinktune.errors import RecipeError
from thinktune.formatting import render
from thinktune.rewards.library import correct
from thinktune.stages.dpo import build_pairs, pair_up


def rec(i: int, a: int, b: int) -> Record:
    return Record(id=f"q{i}", question=f"Compute {a} + {b}.", answer=str(a + b), task="chain_arith")


def right(a, b, note=""):
    return render(f"{a} + {b} = {a + b}{note}", str(a + b))


def wrong(a, b, off=1):
    return render(f"{a} + {b} = {a + b + off}", str(a + b + off))


def verify(text, record):
    return correct(text, record)


# ---------------------------------------------------------------------------------------------------------------
# Pair building


def test_build_pairs_grades_with_the_verifier_skips_one_sided_questions_and_caps_pairs():
    records = [rec(0, 2, 3), rec(1, 4, 4), rec(2, 1, 6), rec(3, 5, 2)]
    malformed_right = "<think>\n5 + 2 = 7\n<answer>7</answer>"  # right answer, think block never closed
    samples = [
        [right(2, 3), right(2, 3, " (sure)"), wrong(2, 3), wrong(2, 3, 2), wrong(2, 3, 3)],  # 2 correct, 3 wrong
        [right(4, 4), right(4, 4, " ok"), right(4, 4)],  # all correct: skipped
        [wrong(1, 6), wrong(1, 6, 2), "no tags at all"],  # all wrong: skipped
        [right(5, 2), right(5, 2), malformed_right],  # duplicates collapse; a format failure is a rejected one
    ]
    pairs, stats = build_pairs(records, samples, verify, pairs_per_question=2, seed=0)

    assert (stats.questions, stats.with_both, stats.only_correct, stats.only_incorrect) == (4, 2, 1, 1)
    assert stats.skipped == 2
    assert (stats.samples, stats.correct, stats.incorrect, stats.pairs) == (14, 7, 7, 3)
    by_q = {}
    for p in pairs:
        by_q.setdefault(p["id"], []).append(p)
    assert {k: len(v) for k, v in by_q.items()} == {"q0": 2, "q3": 1}  # cap 2; q3 has 1 distinct correct, 1 wrong
    for p in pairs:
        r = records[int(p["id"][1:])]
        assert p["question"] == r.question
        assert verify(p["chosen"], r) == 1.0 and verify(p["rejected"], r) == 0.0
        assert p["chosen"] != p["rejected"]
    assert by_q["q3"][0]["rejected"] == malformed_right
    assert len({(p["chosen"], p["rejected"]) for p in by_q["q0"]}) == 2  # distinct pairs

    again, _ = build_pairs(records, samples, verify, pairs_per_question=2, seed=0)
    assert again == pairs  # the same seed gives the same pairs
    one, stats1 = build_pairs(records, samples, verify, pairs_per_question=1, seed=0)
    assert stats1.pairs == 2 and {p["id"] for p in one} == {"q0", "q3"}


def test_pair_up_cycles_the_shorter_list_and_never_pairs_identical_texts():
    pairs = pair_up(["a", "a", "b"], ["x", "y", "z", "w"], 10, random.Random(0))
    assert len(pairs) == 4  # max(distinct good, distinct bad)
    assert {g for g, _ in pairs} == {"a", "b"} and {b for _, b in pairs} == {"x", "y", "z", "w"}
    assert pair_up(["a"], ["a"], 3, random.Random(0)) == []
    assert pair_up([], ["x"], 3, random.Random(0)) == []


def test_build_pairs_rejects_mismatched_sample_lists():
    with pytest.raises(ValueError, match="2 sample lists for 1 questions"):
        build_pairs([rec(0, 1, 1)], [[], []], verify, 1, 0)


# ---------------------------------------------------------------------------------------------------------------
# Pairs file and recipe errors


@pytest.mark.parametrize("line, message", [
    ('{"question": "Q", "chosen": "A"}', "pairs.jsonl:2: rejected: required field is missing"),
    ('{"chosen": "A", "rejected": "B"}', "pairs.jsonl:2: question: required field is missing (or give prompt)"),
    ('{"question": "Q", "prompt": "P", "chosen": "A", "rejected": "B"}',
     "pairs.jsonl:2: question: set exactly one of question or prompt"),
    ('{"question": "Q", "chosen": " ", "rejected": "B"}', "pairs.jsonl:2: chosen: must be a non-empty string"),
    ('{"question": "Q", "chosen": "A", "rejected": 3}', "pairs.jsonl:2: rejected: must be a non-empty string"),
    ('{"question": "Q", "chosen": "A", "rejected": "A"}', "pairs.jsonl:2: rejected: identical to chosen"),
    ('{"question": "Q", "chosen": "A", "rejected": "B", "score": 1}', "pairs.jsonl:2: score: unknown field"),
    ('{"question": "Q", "chosen": "A", "rejected": "B", "id": 7}', "pairs.jsonl:2: id: must be a string"),
    ('["Q", "A", "B"]', "pairs.jsonl:2: expected a JSON object, got list"),
    ('{"question": "Q", "chosen": "A"', "pairs.jsonl:2: invalid JSON"),
])
def test_pairs_file_errors_name_file_line_and_field(tmp_path, line, message):
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"question": "Q1", "chosen": "A", "rejected": "B"}\n' + line + "\n")
    with pytest.raises(DataError) as e:
        read_pairs_file(f)
    assert str(e.value).startswith(str(tmp_path / message.split(":")[0]))
    assert message in str(e.value)


def test_pairs_file_reads_question_or_prompt_rows(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"question": "Q1", "chosen": "A", "rejected": "B"}\n\n'
                 '{"id": "x", "prompt": "<|user|>\\nQ2\\n<|assistant|>\\n", "chosen": "C", "rejected": "D"}\n')
    rows = read_pairs_file(f)
    assert rows == [{"id": "line-1", "question": "Q1", "chosen": "A", "rejected": "B"},
                    {"id": "x", "prompt": "<|user|>\nQ2\n<|assistant|>\n", "chosen": "C", "rejected": "D"}]
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no pairs"):
        read_pairs_file(tmp_path / "empty.jsonl")


@pytest.mark.parametrize("dpo, message", [
    ({"pairs": "file"}, "dpo: pairs: file needs pairs_file"),
    ({"pairs": "teacher"}, "dpo: pairs: teacher needs teacher"),
    ({"pairs_file": "p.jsonl"}, "dpo: pairs_file is only read with pairs: file"),
    ({"samples_per_question": 1}, "dpo: samples_per_question must be >= 2"),
    ({"pairs": "file", "pairs_file": "/nonexistent/p.jsonl"}, "dpo.pairs_file: /nonexistent/p.jsonl: file not found"),
    ({"pairs": "teacher", "teacher": "./no-such-teacher"}, "dpo.teacher: ./no-such-teacher does not exist"),
    ({"examples_per_step": 12, "micro_batch_size": 8}, "dpo.examples_per_step (12) must be a multiple of"),
    ({"beta": 0}, "dpo.beta: Input should be greater than 0"),
    ({"betta": 0.2}, "dpo.betta: unknown key; did you mean 'beta'?"),
])
def test_recipe_errors_name_the_dpo_field(tmp_path, dpo, message):
    recipe = reduced_recipe(tmp_path, "bad", dpo=dpo)
    with pytest.raises(RecipeError) as e:
        load_recipe(recipe)
    assert message in str(e.value)


def test_bad_pairs_file_fails_at_recipe_load_with_its_line(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"question": "Q", "chosen": "A", "rejected": "B"}\n{"question": "Q", "chosen": "A"}\n')
    recipe = reduced_recipe(tmp_path, "badfile", dpo={"pairs": "file", "pairs_file": str(f)})
    proc = thinktune("recipe", "check", str(recipe))
    assert proc.returncode != 0
    assert f"dpo.pairs_file: {f}:2: rejected: required field is missing" in proc.stdout + proc.stderr


def test_dpo_runs_after_grpo_as_designed_and_its_block_is_fingerprinted(tmp_path):
    from thinktune.config import fingerprint
    from thinktune.run import stage_inputs

    with_dpo = load_recipe(reduced_recipe(tmp_path, "a", dpo={}))
    without = load_recipe(reduced_recipe(tmp_path, "b"))
    assert with_dpo.stages() == ["data", "base", "sft", "grpo", "dpo", "audit", "report"]
    for stage in ("data", "base", "sft", "grpo"):  # a new stage never invalidates completed earlier stages
        assert fingerprint(stage_inputs(with_dpo, stage)) == fingerprint(stage_inputs(without, stage))
    assert fingerprint(stage_inputs(with_dpo, "audit")) != fingerprint(stage_inputs(without, "audit"))
    beta = load_recipe(reduced_recipe(tmp_path, "c", dpo={"beta": 0.3}))
    assert fingerprint(stage_inputs(beta, "dpo")) != fingerprint(stage_inputs(with_dpo, "dpo"))
    saves = load_recipe(reduced_recipe(tmp_path, "d", dpo={"save_steps": 7}))  # operational: same fingerprint
    assert fingerprint(stage_inputs(saves, "dpo")) == fingerprint(stage_inputs(with_dpo, "dpo"))


# ---------------------------------------------------------------------------------------------------------------
# End to end (tiny model; pairs from a file because a CI-sized model solves nothing to pair up)


def dpo_recipe(tmp_path, name, pairs_file, **dpo):
    return reduced_recipe(tmp_path, name, grpo=None, report=None, audit={"max_items": 10},
                          dpo={"pairs": "file", "pairs_file": str(pairs_file), "max_steps": 6, "save_steps": 2,
                               "logging_steps": 1, **dpo})


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """(directory, pairs file): one finished data/base/sft run that each test copies and extends with a dpo block."""
    root = tmp_path_factory.mktemp("dpo")
    write_pairs(root / "pairs.jsonl")
    sft_only = reduced_recipe(root, "sft", grpo=None, report=None, audit=None)
    proc = thinktune("run", str(sft_only))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir(sft_only), root / "pairs.jsonl"


def extend(sft_run, tmp_path, name):
    """A copy of the finished SFT run under ``name`` and a recipe that adds the dpo stage to it."""
    src, pairs = sft_run
    recipe = dpo_recipe(tmp_path, name, pairs)
    shutil.copytree(src, run_dir(recipe))
    return recipe


@pytest.fixture(scope="module")
def finished(sft_run, tmp_path_factory):
    recipe = extend(sft_run, tmp_path_factory.mktemp("done"), "done")
    proc = thinktune("run", str(recipe))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return recipe, proc.stdout + proc.stderr


@pytest.mark.slow
def test_dpo_stage_added_to_a_finished_sft_run(sft_run, finished):
    recipe, log = finished
    for done in ("data", "base", "sft"):  # adding a stage never invalidates the completed ones
        assert f"[{done}] complete — skipped" in log
    n_pairs = len(read_pairs_file(sft_run[1]))
    root = run_dir(recipe) / "dpo"
    assert json.loads((root / "final" / "thinktune_model.json").read_text())["kind"] == "full"
    assert (root / "final" / "model.safetensors").exists()
    assert len((root / "pairs.jsonl").read_text().splitlines()) == n_pairs
    eff = json.loads((root / "effective_config.json").read_text())
    assert eff["beta"] == 0.1 and eff["loss_type"] == ["sigmoid"] and eff["max_steps"] == 6
    metrics = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert len(losses) == 6
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)  # METHODS §11.4: π_θ = π_ref at step 0 → ln 2
    manifest = json.loads((run_dir(recipe) / "manifest.json").read_text())
    result = manifest["stages"]["dpo"]["result"]
    assert result["pairs"] == n_pairs and result["steps"] == 6
    assert result["reference"].startswith(f"input model {run_dir(recipe) / 'sft' / 'final'}")
    results = json.loads((run_dir(recipe) / "results.json").read_text())
    assert list(results["models"]) == ["base", "sft", "dpo"]
    audit = json.loads((run_dir(recipe) / "audit" / "dpo" / "audit.json").read_text())
    assert audit["n"] == 10


@pytest.mark.slow
def test_dpo_kill_then_resume_matches_uninterrupted(sft_run, finished, tmp_path):
    reference, _ = finished
    recipe = extend(sft_run, tmp_path, "kill")
    root = run_dir(recipe)
    proc = start(recipe)
    kill_when(proc, root / "dpo" / "checkpoint-2" / "COMMITTED")
    assert json.loads((root / "manifest.json").read_text())["stages"]["dpo"]["status"] == "running"
    assert not (root / "dpo" / "final").exists()
    resumed = thinktune("run", str(recipe))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "[dpo] interrupted earlier — resuming" in log
    assert "[dpo] reusing pairs.jsonl" in log
    assert "[dpo] resuming from checkpoint-" in log
    assert "[sft] complete — skipped" in log
    assert json.loads((root / "manifest.json").read_text())["stages"]["dpo"]["attempts"] == 2

    def losses(run):
        rows = [json.loads(x) for x in (run_dir(run) / "dpo" / "metrics.jsonl").read_text().splitlines()]
        return {m["step"]: m["loss"] for m in rows if "loss" in m}

    want, got = losses(reference), losses(recipe)
    assert sorted(got) == list(range(1, 7))
    assert got == pytest.approx(want, abs=1e-5)  # steps after the checkpoint train on the same batches
    a = json.loads((run_dir(reference) / "results.json").read_text())["models"]["dpo"]
    b = json.loads((root / "results.json").read_text())["models"]["dpo"]
    assert a == b


def test_sampling_is_seeded_and_gives_k_completions_per_question():
    from tests.helpers.tiny_chain import CORPUS
    from thinktune.config import DPOStage, TinyModelConfig
    from thinktune.formatting import DEFAULT_FORMAT
    from thinktune.models import build_tiny
    from thinktune.stages.dpo import sample_completions

    model, tok = build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                                            vocab_size=280), CORPUS, seed=0)
    records = [rec(i, i, 2) for i in range(3)]
    cfg = DPOStage(samples_per_question=4, max_new_tokens=8)
    a = sample_completions(model, tok, records, cfg, DEFAULT_FORMAT, None, None, seed=0)
    assert [len(x) for x in a] == [4, 4, 4]
    assert a == sample_completions(model, tok, records, cfg, DEFAULT_FORMAT, None, None, seed=0)
    assert a != sample_completions(model, tok, records, cfg, DEFAULT_FORMAT, None, None, seed=1)
    assert len({t for row in a for t in row}) > 3  # sampled, not greedy


def test_teacher_pairs_sample_the_teacher_and_are_reused_on_resume(tmp_path):
    from tests.helpers.tiny_chain import CORPUS
    from thinktune.config import TinyModelConfig
    from thinktune.context import StageContext
    from thinktune.data.records import write_jsonl
    from thinktune.models import build_tiny, save_model
    from thinktune.stages.dpo import make_pairs

    teacher, tok = build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                                              vocab_size=280), CORPUS, seed=0)
    save_model(teacher, tok, tmp_path / "teacher")
    recipe = load_recipe(reduced_recipe(tmp_path, "t", dpo={"pairs": "teacher", "teacher": str(tmp_path / "teacher"),
                                                            "max_questions": 3, "samples_per_question": 2,
                                                            "max_new_tokens": 6}))
    ctx = StageContext(recipe.run_dir(), recipe, "dpo")
    write_jsonl(ctx.data_file("train"), [rec(i, i, 1) for i in range(5)])
    stage_dir = ctx.dir
    stage_dir.mkdir(parents=True)
    pairs, stats = make_pairs(ctx, None, None)  # the student is never sampled
    assert stats["source"] == "teacher" and stats["teacher"] == str(tmp_path / "teacher")
    assert (stats["questions"], stats["samples"]) == (3, 6)
    assert stats["questions"] == stats["with_both"] + stats["skipped"]
    assert json.loads((stage_dir / "pairs_stats.json").read_text()) == stats
    shutil.rmtree(tmp_path / "teacher")  # a resumed stage must not sample again
    again = make_pairs(ctx, None, None)
    assert again == (pairs, stats)


def test_loss_type_is_checked_against_trl_before_any_sampling():
    from thinktune.config import DPOStage
    from thinktune.stages.dpo import check_loss_type, trl_loss_types

    known = trl_loss_types()  # read from TRL's DPOConfig help: guards the parse against a TRL upgrade
    assert {"sigmoid", "ipo", "sft", "apo_zero"} <= set(known) and len(known) >= 10
    assert check_loss_type(DPOStage()) == ["sigmoid"]
    assert check_loss_type(DPOStage(loss_type=["sigmoid", "sft"])) == ["sigmoid", "sft"]
    with pytest.raises(RecipeError, match=r"dpo.loss_type: 'sigmod' is not a TRL DPO loss \(one of sigmoid, "):
        check_loss_type(DPOStage(loss_type=["sft", "sigmod"]))
