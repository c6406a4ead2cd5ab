"""Does a run's exported model behave as the run's audit says? (issue 18: "the exported GRPO model loads in plain
transformers and reproduces the audit's greedy answers on 20 items; ``thinktune serve`` of it answers the openai
client").

    python experiments/probes/export_check.py runs/smollm2-arith --items 20 --out experiments/probes/results/x.json

1. ``thinktune export RUN -o TMP`` (the run's last model stage, adapters merged).
2. Plain transformers — ``AutoModelForCausalLM`` / ``AutoTokenizer`` and the tokenizer's chat template, no thinktune
   code — generates greedily for the first ``--items`` held-out questions of the audit, with the prompt contract the
   export records in ``thinktune_model.json`` (instruction prepended to the question, as the run prompted).
   Its answers (the text inside ``<answer>…</answer>``) are compared with the audit's
   (``audit/STAGE/examples.jsonl``); whole completions are compared too. The audit generated in batches (left padding), this script one question at
   a time, so a completion may differ in a late token where two logits are within float rounding; the answers are
   the acceptance.
3. ``thinktune serve TMP`` on a free port, and the ``openai`` client asks ``--serve-items`` of the same questions
   (temperature 0): each response has to carry the same answer.

Writes a JSON summary (matches, mismatches with both texts, serve answers) and exits 1 when any answer differs.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def answer_of(text: str | None) -> str | None:
    m = ANSWER.search(text or "")
    return m.group(1).strip() if m else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plain_transformers(export: Path, questions: list[str], max_new_tokens: int) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    contract = json.loads((export / "thinktune_model.json").read_text()).get("prompt") or {}
    instruction, system = contract.get("instruction"), contract.get("system")
    tok = AutoTokenizer.from_pretrained(export)
    model = AutoModelForCausalLM.from_pretrained(export).eval()
    out = []
    for q in questions:
        content = f"{instruction}\n\n{q}" if instruction else q
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)
        out.append(tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out


def serve_answers(export: Path, questions: list[str], max_new_tokens: int) -> list[str | None]:
    from openai import OpenAI

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "thinktune", "serve", str(export), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=600)
        deadline = time.time() + 300
        while True:
            try:
                name = client.models.list().data[0].id
                break
            except Exception:  # noqa: BLE001 - not listening yet; the deadline bounds the wait
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"thinktune serve did not come up: {proc.stdout.read() if proc.poll() else ''}")
                time.sleep(1)
        got = []
        for q in questions:
            r = client.chat.completions.create(model=name, messages=[{"role": "user", "content": q}],
                                               temperature=0, max_tokens=max_new_tokens)
            got.append(answer_of(r.choices[0].message.content) or (r.choices[0].message.content or "").strip())
        return got
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--stage", default="grpo", help="the audited model to compare (default grpo)")
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--serve-items", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from thinktune.safe_yaml import load_yaml_file

    recipe = load_yaml_file(args.run / "recipe.yaml")
    max_new = int((recipe.get("audit") or {}).get("max_new_tokens", 96))
    rows = [json.loads(x) for x in (args.run / "audit" / args.stage / "examples.jsonl").read_text().splitlines()]
    rows = rows[: args.items]
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "thinktune", "export", str(args.run), "-o", str(export),
                               "--stage", args.stage], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"thinktune export failed: {proc.stdout}{proc.stderr}")
        t_export = time.time() - t0
        texts = plain_transformers(export, [r["question"] for r in rows], max_new)
        t_plain = time.time() - t0 - t_export
        served = serve_answers(export, [r["question"] for r in rows[: args.serve_items]], max_new)
    compared = [{"id": r["id"], "audit_answer": r["answer"], "plain_answer": answer_of(t),
                 "same_answer": answer_of(t) == r["answer"], "same_text": t == r["completion"].strip(),
                 **({} if t == r["completion"].strip() else {"audit_text": r["completion"], "plain_text": t})}
                for r, t in zip(rows, texts)]
    serve = [{"id": r["id"], "audit_answer": r["answer"], "served_answer": s, "same_answer": s == r["answer"]}
             for r, s in zip(rows, served)]
    summary = {"run": str(args.run), "stage": args.stage, "items": len(rows),
               "same_answer": sum(c["same_answer"] for c in compared),
               "same_text": sum(c["same_text"] for c in compared),
               "serve_items": len(serve), "serve_same_answer": sum(s["same_answer"] for s in serve),
               "seconds": {"export": round(t_export, 1), "plain_generate": round(t_plain, 1)},
               "compared": compared, "serve": serve}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("compared", "serve")}, indent=1))
    ok = summary["same_answer"] == len(rows) and summary["serve_same_answer"] == len(serve)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
