"""A newcomer's journey, scripted (issue 21, acceptance), at toy sizes: raw GSM8K-style data → convert → curate →
split → an own recipe → run (output redirected to a file, as under nohup or CI) → generate, audit and serve on
``runs/x/sft/final`` directly → the standalone audit equals the run's on the same items → export bf16 → plain
transformers loads it.
"""

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import yaml
from typer.testing import CliRunner

from thinktune.cli import app
from thinktune.data.records import read_records
from thinktune.data.tasks import get_task

pytestmark = pytest.mark.slow

INSTRUCTION, SYSTEM = "Solve it step by step.", "You are a careful calculator."


def cli(*args):
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert res.exit_code == 0, (args, res.output)
    return " ".join(res.output.split())


def raw_gsm8k(path, n=150, duplicates=3):
    """GSM8K's own layout: question, and an answer that is the reasoning then '#### N'."""
    recs = get_task("chain_arith").generate(2 * n, seed=5, max_ops=2, max_operand=9)
    unique = {r.question: r for r in recs}  # the small task repeats itself: the duplicates are added on purpose
    rows = [{"question": r.question, "answer": f"{r.reasoning}\n#### {r.answer}"} for r in list(unique.values())[:n]]
    rows += rows[:duplicates]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def test_newcomer_journey(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200",
           "THINKTUNE_PROGRESS_INTERVAL": "0.05"}  # SFT takes ~1.5 s on an idle core
    # data: convert, curate (the exact duplicates are removed and said so), a seeded random split
    raw_gsm8k(tmp_path / "raw.jsonl")
    cli("data", "validate", str(tmp_path / "raw.jsonl"))
    cli("data", "convert", str(tmp_path / "raw.jsonl"), "-o", str(tmp_path / "all.jsonl"))
    assert "exact_dedupe: removed 3" in cli("data", "curate", str(tmp_path / "all.jsonl"), "-o",
                                            str(tmp_path / "cur.jsonl"), "--no-near")
    cli("data", "split", str(tmp_path / "cur.jsonl"), "--eval", "16", "--train-out", str(tmp_path / "train.jsonl"),
        "--eval-out", str(tmp_path / "eval.jsonl"), "--seed", "1")
    assert len(read_records(tmp_path / "eval.jsonl")) == 16

    # an own recipe with its own prompt (instruction + system message), checked, then run with output in a file
    recipe = {"name": "mine", "seed": 0, "threads": 1, "output_dir": str(tmp_path / "runs"),
              "model": {"tiny": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2,
                                 "vocab_size": 300}, "instruction": INSTRUCTION, "system": SYSTEM},
              "data": {"train_file": str(tmp_path / "train.jsonl"), "eval_file": str(tmp_path / "eval.jsonl")},
              "sft": {"max_steps": 40, "examples_per_step": 16, "micro_batch_size": 16, "learning_rate": 3.0e-3,
                      "save_steps": 20, "logging_steps": 2, "warmup_ratio": 0.0},
              "audit": {"max_new_tokens": 32, "batch_size": 16, "tests": []}}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(recipe))
    cli("recipe", "check", str(tmp_path / "mine.yaml"))
    log = tmp_path / "run.log"
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "thinktune", "run", str(tmp_path / "mine.yaml")], stdout=fh,
                              stderr=subprocess.STDOUT, env=env, timeout=900)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    # progress in a log: the SFT stage shows life on plain lines (step, loss, ETA), not only at its end
    ticks = [line for line in text.splitlines() if line.lstrip().startswith("sft") and "elapsed" in line]
    assert len(ticks) >= 4, text[-3000:]
    assert any("loss=" in line and "ETA" in line for line in ticks), ticks
    assert "\r" not in text  # no terminal bars redrawn in a file
    root = tmp_path / "runs" / "mine"
    final = str(root / "sft" / "final")

    # generate and audit on the stage's final/ directly, prompted as the run prompted it
    cli("generate", final, "--data", str(root / "data" / "eval.jsonl"), "--n", "2", "--max-new-tokens", "8")
    cli("audit", final, "--data", str(root / "data" / "eval.jsonl"), "--tests", "none", "--max-new-tokens", "32",
        "--batch-size", "16", "-o", str(tmp_path / "audit"))
    mine = json.loads((tmp_path / "audit" / "sft" / "audit.json").read_text())
    run = json.loads((root / "audit" / "sft" / "audit.json").read_text())
    for key in ("n", "accuracy", "format_rate", "mean_completion_tokens"):
        assert mine[key] == run[key], key
    for part in ("instruction", "system", "format", "extractor", "example"):
        assert mine["prompt"][part] == run["prompt"][part], part
    assert run["prompt"]["instruction"] == INSTRUCTION and SYSTEM in run["prompt"]["example"]

    def completions(path):
        return {r["id"]: r["completion"] for r in map(json.loads, path.read_text().splitlines())}

    assert completions(tmp_path / "audit" / "sft" / "examples.jsonl") == completions(root / "audit" / "sft" /
                                                                                    "examples.jsonl")

    # serve the same final/: the prompt it builds is the run's (same token count as the audit's prompt)
    from transformers import AutoTokenizer

    from thinktune.formatting import chat_prompt

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "thinktune", "serve", final, "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not come up"
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            time.sleep(0.3)
        question = read_records(root / "data" / "eval.jsonl")[0].question
        status, body = post(port, "/v1/chat/completions", {"model": "sft", "temperature": 0, "max_tokens": 8,
                                                           "messages": [{"role": "user", "content": question}]})
        assert status == 200, body
        tok = AutoTokenizer.from_pretrained(final)
        expected = chat_prompt(tok, question, INSTRUCTION, SYSTEM)
        assert body["usage"]["prompt_tokens"] == len(tok(expected, add_special_tokens=False)["input_ids"])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)

    # export in bf16: plain transformers loads it and it carries the prompt contract and a truthful card
    cli("export", str(root), "-o", str(tmp_path / "export"), "--dtype", "bf16")
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
    assert plain.dtype == torch.bfloat16
    ids = tok(expected, return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert plain.generate(ids, max_new_tokens=4, do_sample=False).shape[1] > ids.shape[1]
    meta = json.loads((tmp_path / "export" / "thinktune_model.json").read_text())
    assert meta["prompt"]["instruction"] == INSTRUCTION and meta["prompt"]["system"] == SYSTEM
    card = (tmp_path / "export" / "README.md").read_text()
    assert f"| sft | {run['accuracy']:.1%} |" in card and "[None]" not in card
