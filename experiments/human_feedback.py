"""Human feedback end to end on the quickstart model, with a scripted annotator standing in for people (issue 22).

    python experiments/human_feedback.py --out runs/hf                 # the quickstart model (see "Cost")
    python experiments/human_feedback.py --out /tmp/hf --scale tiny    # a smoke run (tests/feedback/test_e2e.py)

Steps, each with thinktune's own code:

1. SFT: ``recipes/quickstart.yaml`` without GRPO, audit and report (``runs/sft``).
2. Candidates: the SFT model samples two completions (T = 1.0) for each of ``--prompts`` training questions
   (feedback/items.py's ``Sampler``, the sampler behind ``thinktune label MODEL --prompts``); the verifier's verdict
   is kept with each candidate.
3. Labels: a labelling session (feedback/store.py, the store behind the page) worked by two scripted annotators:
   ``ana`` reveals the verdict and prefers the correct answer (tie when both are right, both bad when neither is);
   ``ben`` does the same but clicks the other answer on ``--noise`` of his items. ``--overlap`` of the items go to
   both, so ``thinktune label stats`` has an agreement to report. The labels file is ``labels.jsonl``.
4. Two arms, each a copy of the SFT run with one more block:
   - ``rlhf``: a ``reward_model`` stage on the labels (TRL's RewardTrainer; held-out pairwise accuracy), then the
     quickstart's GRPO with the ``reward_model`` reward in place of the verifier's ``correct`` (format kept);
     GRPO refuses a reward model whose held-out accuracy is not shown above ``grpo.min_reward_model_accuracy``
     (0.7); the summary then records the refusal instead of an accuracy (the smoke run trains anyway);
   - ``dpo``: DPO on the same labels file (``dpo.pairs: file``).
   Each arm's audit scores SFT and the new model on the same held-out items; ``results.json`` holds the paired
   difference with its 95 % bootstrap interval (audit/significance.py).
5. ``summary.json`` and a table: label counts, kappa, the reward model's held-out pairwise accuracy, SFT vs GRPO-RM
   and SFT vs DPO accuracy with the paired CI.

Targets (issue 22): reward-model pairwise accuracy ≥ 80 % on held-out pairs; GRPO-RM and DPO each above SFT with a
paired 95 % interval excluding 0.

Cost (estimated from docs/RESULTS.md's quickstart timings on 2 idle cores, not measured here): SFT ~5 min;
sampling 1,000 prompts x 2 one prompt at a time ~5 min; reward model on ~450 pairs ~1 min; GRPO 60 steps with the
learned reward ~8-10 min (one reward-model forward per completion in the reward worker on top of the quickstart's
~6 min); DPO ~2 min; two audits of two models on 500 items ~1 min. About 25 minutes in all, peak memory ~1.5 GB.
``--scale tiny`` takes a few minutes on an idle core (most of it SFT on an easy variant of the task).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]

# The smoke run: experiment 6's reduced settings (an easy variant of the task, so that the SFT model gets some
# answers right and the annotators have pairs to prefer), and small stages after it.
TINY = {
    "data": {"task": {"n_train": 1000, "n_eval": 40,
                      "knobs": {"min_ops": 1, "max_ops": 3, "max_operand": 9, "max_value": 60, "ops": "+-",
                                "trace": "steps"}}},
    "sft": {"max_steps": 150, "save_steps": 50, "stop_at": None},
    "reward_model": {"max_steps": 8, "examples_per_step": 8, "micro_batch_size": 8, "save_steps": 4,
                     "logging_steps": 1},
    "grpo": {"max_steps": 3, "prompts_per_step": 4, "samples_per_prompt": 4, "micro_batch_size": 16,
             "max_new_tokens": 48, "save_steps": 3, "eval_every": None, "preflight": False,
             "dynamic_sampling": {"enabled": False}},
    "dpo": {"max_steps": 3, "examples_per_step": 4, "micro_batch_size": 4, "save_steps": 3},
    "audit": {"max_new_tokens": 48, "batch_size": 40},
}
REWARD_MODEL = {"learning_rate": 2.0e-4, "epochs": 2, "examples_per_step": 16, "micro_batch_size": 16,
                "max_length": 256, "held_out": 0.2, "save_steps": 50, "logging_steps": 5}
DPO = {"pairs": "file", "beta": 0.1, "learning_rate": 2.0e-5, "epochs": 1, "examples_per_step": 16,
       "micro_batch_size": 16, "max_length": 256, "save_steps": 50, "logging_steps": 5}


def scripted_choice(verdicts: dict[str, bool | None], flip: bool = False) -> str:
    """The stand-in annotator's click for two candidates (slots A, B): the correct one; tie when both are; both bad
    when neither is (or there is no verdict). ``flip``: the other answer instead (a careless click)."""
    a, b = verdicts.get("A"), verdicts.get("B")
    if bool(a) != bool(b):
        return ("B" if a else "A") if flip else ("A" if a else "B")
    return "tie" if a and b else "both_bad"


def label_by_script(store, annotators: dict[str, float], seed: int = 0) -> int:
    """Scripted annotators work a labelling session in turn until no item is left: each takes their next item,
    reveals the verdict and clicks by it, careless on a share of items (``annotators``: name -> that share).
    Returns the number of labels made."""
    rng = random.Random(seed)
    active, made = list(annotators), 0
    while active:
        for who in list(active):
            item = store.next_item(who)
            if item is None:
                active.remove(who)
                continue
            choice = scripted_choice(store.reveal(who, item.id), flip=rng.random() < annotators[who])
            store.add_label(who, uuid.uuid4().hex, item.id, choice, verdict_seen=True)
            made += 1
    return made


def recipe(out: Path, name: str, scale: str, threads: int | None = None, **blocks: Any) -> Path:
    raw = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    raw.update(name=name, output_dir=str(out / "runs"))
    if threads:
        raw["threads"] = threads
    if scale == "tiny":
        for key, over in TINY.items():
            if key in raw:
                _merge(raw[key], over)
    for key, block in blocks.items():
        if block is None:
            raw.pop(key, None)
        else:
            raw[key] = _merge(dict(raw.get(key) or {}), block)
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _merge(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def thinktune_run(path: Path, refusal: str | None = None) -> str | None:
    """``thinktune run path``, its messages passed through. A failure stops the experiment, except one whose
    message contains ``refusal`` (a stage that refused to train): that message is returned."""
    proc = subprocess.Popen([sys.executable, "-m", "thinktune.cli", "run", str(path)], stderr=subprocess.PIPE,
                            text=True)
    tail: list[str] = []
    for line in proc.stderr:  # type: ignore[union-attr]
        sys.stderr.write(line)
        tail = (tail + [line])[-40:]
    if proc.wait() == 0:
        return None
    text = " ".join(" ".join(tail).split())
    if refusal and refusal in text:
        return text[text.index(refusal):]
    raise SystemExit(f"thinktune run {path} failed (exit {proc.returncode})")


def write_candidates(sft_final: Path, train: Path, out: Path, n: int, seed: int) -> dict[str, int]:
    """Two sampled candidates (with verdicts) for each of the last ``n`` training questions."""
    from thinktune.data.records import read_records
    from thinktune.feedback.items import Item, Sampler
    from thinktune.formatting import resolve_instruction
    from thinktune.named_model import resolve_model

    named = resolve_model(str(sft_final))
    model, tokenizer = named.load()
    sampler = Sampler(model, tokenizer, k=2, temperature=1.0, max_new_tokens=96,
                      instruction=resolve_instruction("auto", named.prompt), seed=seed)
    rows, counts = [], {"prompts": 0, "one_right": 0, "both_right": 0, "both_wrong": 0, "identical": 0}
    for r in read_records(train)[-n:]:
        cands = sampler.fill(Item(r.id, r.question, [], r.answer, r.task))
        counts["prompts"] += 1
        right = sum(bool(c.correct) for c in cands)
        key = ("identical" if len(cands) < 2 else "both_right" if right == 2 else "one_right" if right == 1
               else "both_wrong")
        counts[key] += 1
        rows.append({"id": r.id, "question": r.question, "answer": r.answer, "task": r.task,
                     "completions": [{"text": c.text, "correct": c.correct} for c in cands]})
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return counts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scale", choices=("full", "tiny"), default="full")
    ap.add_argument("--prompts", type=int, help="training questions to sample candidates for "
                                                "(default 1000; tiny: 64)")
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--noise", type=float, default=0.1, help="share of ben's items he clicks the wrong way")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch threads per run (default: the quickstart recipe's)")
    args = ap.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    n_prompts = args.prompts or (64 if args.scale == "tiny" else 1000)
    if args.threads:  # the candidates are sampled in this process
        import torch

        torch.set_num_threads(args.threads)

    sft = recipe(out, "sft", args.scale, args.threads, grpo=None, audit=None, report=None)
    thinktune_run(sft)
    sft_dir = out / "runs" / "sft"

    from thinktune.data.labels import label_summary
    from thinktune.feedback.items import from_candidates_file
    from thinktune.feedback.store import LabelStore, Settings

    counts = write_candidates(sft_dir / "sft" / "final", sft_dir / "data" / "train.jsonl", out / "candidates.jsonl",
                              n_prompts, args.seed)
    labels = out / "labels.jsonl"
    store = LabelStore(out / "labels.sqlite", from_candidates_file(out / "candidates.jsonl", 2, args.seed),
                       Settings(args.seed, args.overlap))
    try:
        label_by_script(store, {"ana": 0.0, "ben": args.noise}, args.seed)
        store.export(labels)
        summary_labels = label_summary(store.labels())
    finally:
        store.close()

    tiny = args.scale == "tiny"
    arms = {
        "rlhf": recipe(out, "rlhf", args.scale, args.threads, report=None,
                       reward_model={**REWARD_MODEL, **(TINY["reward_model"] if tiny else {}),
                                     "pairs_file": str(labels)},
                       grpo={"rewards": [{"fn": "reward_model", "weight": 1.0}, {"fn": "format", "weight": 0.1}],
                             "reward_deadline": 120, "reward_probes": False}),
        "dpo": recipe(out, "dpo", args.scale, args.threads, grpo=None, report=None,
                      dpo={**DPO, **(TINY["dpo"] if tiny else {}), "pairs_file": str(labels)}),
    }
    if tiny:  # a smoke run checks the mechanics: GRPO trains on its (weak) reward model anyway (null: no check;
        # set here because recipe()'s merge reads None as "remove the key")
        raw = yaml.safe_load(arms["rlhf"].read_text())
        raw["grpo"]["min_reward_model_accuracy"] = None
        arms["rlhf"].write_text(yaml.safe_dump(raw, sort_keys=False))
    result: dict[str, Any] = {"scale": args.scale, "seed": args.seed, "candidates": counts,
                              "labels": {k: summary_labels[k] for k in ("labels", "pairs", "tie", "both_bad",
                                                                        "disagreement")},
                              "kappa": summary_labels["agreement"]["kappa"],
                              "agreement_items": summary_labels["agreement"]["items"]}
    for arm, path in arms.items():
        target = out / "runs" / arm
        if not target.exists():
            shutil.copytree(sft_dir, target)  # the SFT stage is complete there: the arm adds its stages to it
        refused = thinktune_run(path, refusal="grpo: the reward model" if arm == "rlhf" else None)
        if arm == "rlhf":
            rm = json.loads((target / "manifest.json").read_text())["stages"]["reward_model"]["result"]
            result["reward_model"] = {"held_out_pairs": rm["held_out_pairs"], "accuracy": rm["held_out_accuracy"],
                                      "ci95": rm["held_out_accuracy_ci95"]}
        if refused:  # GRPO would not train against a reward model no better than chance (stages/grpo.py)
            result[arm] = {"refused": refused, "ci_excludes_0": False}
            continue
        results = json.loads((target / "results.json").read_text())
        trained = "grpo" if arm == "rlhf" else "dpo"
        change = next(c for c in results["changes"] if c["after"] == trained)
        result[arm] = {"sft_accuracy": change["accuracy_before"], "accuracy": change["accuracy_after"],
                       "delta": change["delta"], "ci95": change["ci95"], "n": change["n"],
                       "ci_excludes_0": change["ci95"][0] > 0}
    result["targets"] = {"reward_model_accuracy_ge_0.8": (result["reward_model"]["accuracy"] or 0) >= 0.8,
                         "grpo_rm_over_sft": result["rlhf"]["ci_excludes_0"],
                         "dpo_over_sft": result["dpo"]["ci_excludes_0"]}
    (out / "summary.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
