"""Property / fuzz suite (issue 20) over the three inputs a user feeds thinktune: JSONL rows (``data validate`` /
``convert`` / ``curate``), recipes (``recipe check``) and HTTP request bodies (the server app, stub model).

Property: whatever the input, the answer is clean — exit 0, or exit 1 with an ``error:`` line that names the
file (and line / field where there is one); for HTTP a 2xx, or a 4xx with an OpenAI-style error body — never a
traceback, an exception escaping, a 5xx or a hang: each input may use at most ``HANG_S`` seconds of CPU (CPU, not
wall-clock, so that a busy shared machine cannot fail the suite), and a wall-clock alarm stops a real hang.

Sizes: the ``slow`` variants run :data:`FULL` (2,000) generated inputs per entry point, as CI does; the quick
variants run :data:`QUICK` in the default suite. Each test asserts it really ran that many inputs and records
the count and wall time (``record_property``; ``-rP`` / ``--junitxml`` show them).
"""

from __future__ import annotations

import contextlib
import json
import signal
import tempfile
import time
from pathlib import Path

import pytest
import typer
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.server import STUB, stub_model
from thinktune.cli import app as typer_app

FULL, QUICK = 2000, 60
HANG_S = 5.0  # CPU seconds per input
WARMING = False  # set while the first-use imports run: no limits then
runner = CliRunner()
app = typer.main.get_command(typer_app)  # built once: typer's CliRunner rebuilds the command tree on every call


def profile(n: int) -> settings:
    # deadline=None: hypothesis's deadline is wall-clock time; `bounded` below judges CPU time instead
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck), print_blob=True)


@contextlib.contextmanager
def bounded(cpu_seconds: float = HANG_S, wall_seconds: float = 120.0):
    """At most ``cpu_seconds`` of this process's CPU for the block, and an alarm after ``wall_seconds`` of wall
    time as a last resort against a real hang (a block that never returns)."""
    if WARMING:
        yield
        return

    def fire(*_):
        raise TimeoutError(f"input still running after {wall_seconds:.0f} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, wall_seconds)
    t0 = time.process_time()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    used = time.process_time() - t0
    assert used < cpu_seconds, f"input took {used:.1f} s of CPU (a hang)"


def assert_clean(result, where: str) -> None:
    out = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out, out[-2000:]
    assert result.exit_code in (0, 1), (result.exit_code, out[-2000:])
    if result.exit_code == 1:
        assert "error:" in out and where in out, out[-2000:]


# ---------------------------------------------------------------------------------------------------------------
# 1. JSONL rows


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False,
                                                                                         allow_infinity=False),
    st.text(max_size=40), st.sampled_from(["", " ", "18", "#### 5", "\\boxed{3}", "<think>", "\u202e", "é"]))
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
FIELDS = ["id", "question", "reasoning", "answer", "answerable", "task", "meta", "problem", "solution", "unique_id"]


@st.composite
def record_like(draw) -> dict:
    row = {"id": draw(st.text(min_size=1, max_size=8)), "question": draw(st.text(min_size=1, max_size=30)),
           "reasoning": draw(st.text(max_size=30)), "answer": draw(st.text(min_size=1, max_size=6))}
    for _ in range(draw(st.integers(0, 3))):
        row[draw(st.sampled_from(FIELDS))] = draw(json_values)
    if draw(st.booleans()):
        row.pop(draw(st.sampled_from(sorted(row))), None)
    return row


def _deep(n: int) -> str:
    return '{"id": "d", "question": "q", "answer": "1", "meta": ' + '{"a": ' * n + "1" + "}" * n + "}"


raw_lines = st.one_of(
    st.sampled_from(["NaN", '{"id": "n", "question": "q", "answer": "1", "meta": {"x": NaN}}', "[1, 2]", '"str"',
                     "42", "null", "{", "}", '{"id": 1e999}', "\ufeff{}", '{"a": "\\ud800"}', "", "   ",
                     '{"id": "b", "question": "q", "answer": "1", "meta": {"n": ' + "9" * 5000 + "}}"]),
    st.sampled_from([_deep(99), _deep(150), _deep(500)]),
    st.text(max_size=60),
)
row_lines = st.lists(st.one_of(record_like().map(json.dumps), json_values.map(json.dumps), raw_lines), max_size=6)


@st.composite
def data_file(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["jsonl", "jsonl", "json", "csv", "bytes"]))
    lines = draw(row_lines)
    if kind == "jsonl":
        return "d.jsonl", "\n".join(lines).encode("utf-8", "surrogatepass")
    if kind == "json":
        body = draw(st.sampled_from(["[{rows}]", '{{"kind": "data", "data": [{rows}]}}', "{rows}", "{first}"]))
        return "d.json", body.format(rows=", ".join(lines), first=lines[0] if lines else "").encode(
            "utf-8", "surrogatepass")
    if kind == "csv":
        cells = draw(st.lists(st.lists(st.text(max_size=20), min_size=1, max_size=4), max_size=5))
        header = draw(st.sampled_from(["id,question,answer", "question,answer", "a,b", ""]))
        return "d.csv", (header + "\n" + "\n".join(",".join(c) for c in cells)).encode("utf-8", "surrogatepass")
    return "d.jsonl", draw(st.binary(max_size=200))


def _jsonl_property(tmp: Path, name: str, content: bytes) -> None:
    src = tmp / name
    src.write_bytes(content)
    with bounded():
        for args in (["data", "validate", str(src), "--format", "auto"],
                     ["data", "convert", str(src), "-o", str(tmp / "out.jsonl")],
                     ["data", "curate", str(src), "-o", str(tmp / "cur.jsonl")]):
            assert_clean(runner.invoke(app, args), str(src))
    for p in tmp.iterdir():  # nothing half-written, no temps left
        assert not p.name.endswith(".tmp"), p


# ---------------------------------------------------------------------------------------------------------------
# 2. recipes

BASE_RECIPE = {"name": "fz", "model": {"tiny": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1,
                                                "num_heads": 2, "vocab_size": 300}},
               "data": {"task": {"name": "chain_arith", "n_train": 20, "n_eval": 5}},
               "sft": {"max_steps": 1, "examples_per_step": 4, "micro_batch_size": 4},
               "grpo": {"max_steps": 1, "prompts_per_step": 2, "samples_per_prompt": 2, "micro_batch_size": 4,
                        "rewards": [{"fn": "correct"}, {"fn": "format", "weight": 0.1}]},
               "audit": {"max_items": 4}}
KEYS = ["name", "seed", "output_dir", "threads", "model", "model.tiny", "model.tiny.hidden_size", "model.tiny.num_heads",
        "model.path", "model.lora", "format.think_open", "format.answer_close", "data", "data.task",
        "data.task.name", "data.task.n_train", "data.task.knobs", "data.task.knobs.max_ops", "data.train_file",
        "sft", "sft.max_steps", "sft.learning_rate", "sft.trl", "sft.trl.lr_scheduler_kwargs", "sft.trl.bogus",
        "grpo.temperature", "grpo.rewards", "grpo.rewards.0.fn", "grpo.rewards.0.kwargs", "grpo.rewards.0.weight",
        "grpo.clip", "grpo.trl", "dpo", "dpo.pairs", "audit.tests", "audit.extractor", "report", "unknown_key"]
recipe_values = st.one_of(
    json_values, st.floats(), st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from(["..", ".", "/", "a/b", "", "correct", "corect", "no_such_mod:fn", "chain_arith", "countdown",
                     "smollm2", "<think>", 10**12, 10**9, -1, 0, float("inf"), float("nan"), [], {}, None]))


def _set(raw: dict, key: str, value) -> None:
    cur = raw
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(cur, list):
            if not cur:
                return
            cur = cur[0]
            continue
        if not isinstance(cur.get(part), (dict, list)):
            cur[part] = {}
        cur = cur[part]
    if isinstance(cur, dict):
        cur[parts[-1]] = value


YAML_TRICKS = ["a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
               "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
               "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
               "x: " + "[" * 3000 + "]" * 3000 + "\n", "seed: 1\nseed: 2\n", "r: &r [*r]\n", "\t- bad\n",
               "!!python/object/apply:os.system ['echo hi']\n", "name: !!binary aGk=\n", "%YAML 9.9\n---\n",
               "--- a\n--- b\n", "x: *undefined\n", "? [a, b]\n: c\n", "\x00\x01", "k: 'unterminated\n"]


@st.composite
def recipe_text(draw) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    raw = json.loads(json.dumps(BASE_RECIPE))
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(KEYS))
        if draw(st.integers(0, 4)) == 0:
            parent, _, leaf = key.rpartition(".")
            cur = raw
            for part in parent.split(".") if parent else []:
                cur = cur.get(part, {}) if isinstance(cur, dict) else {}
            if isinstance(cur, dict):
                cur.pop(leaf, None)
        else:
            _set(raw, key, draw(recipe_values))
    text = yaml.safe_dump(raw, allow_unicode=True)
    if draw(st.integers(0, 3)) == 0:
        trick = draw(st.sampled_from(YAML_TRICKS))
        text = trick + text if draw(st.booleans()) else text + trick
    return text


def _recipe_property(tmp: Path, text: str) -> None:
    path = tmp / "r.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with bounded():
        result = runner.invoke(app, ["recipe", "check", str(path), f"output_dir={tmp / 'runs'}"])
    assert_clean(result, "r.yaml")


# ---------------------------------------------------------------------------------------------------------------
# 3. HTTP request bodies


GOOD_REQUEST = {"model": STUB, "messages": [{"role": "user", "content": "what is 1 + 2?"}], "temperature": 0,
                "max_tokens": 2}
REQUEST_KEYS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream",
                "stream_options", "stop", "seed", "user", "tip", "steer", "tools", "messages.0.role",
                "messages.0.content", "tip.alpha", "tip.beta", "tip.words", "steer.strength", "steer.vector"]
request_values = st.one_of(json_values, st.integers(min_value=-(2**80), max_value=2**80), st.floats(),
                           st.sampled_from([True, False, 0, 1, 2, 1e-300, 1e308, "\ud800", "", [], {}, None,
                                            [{"type": "text", "text": "x"}], {"include_usage": True}]))


@st.composite
def http_body(draw) -> tuple[bytes, str]:
    ctype = draw(st.sampled_from(["application/json"] * 6 + ["text/plain", "application/json; charset=utf-8", ""]))
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.binary(max_size=120)), ctype
    if choice == 1:
        return draw(st.sampled_from([b"[" * 100_000 + b"]" * 100_000, b'{"model": ' + b"9" * 5000 + b"}",
                                     b'{"seed": NaN}', b"\xff\xfe{}", b"", b"null", b"[]", b"1e999"])), ctype
    if choice == 2:
        return json.dumps(draw(json_values)).encode(), ctype
    body = json.loads(json.dumps(GOOD_REQUEST))
    for _ in range(draw(st.integers(1, 3))):
        _set(body, draw(st.sampled_from(REQUEST_KEYS)), draw(request_values))
    text = json.dumps(body, allow_nan=True)
    return text.encode("utf-8", "surrogatepass"), ctype


@pytest.fixture(scope="module")
def client():
    from starlette.testclient import TestClient

    from thinktune.serve import Engine, ServeConfig, build_app
    from thinktune.serve_guard import Policy

    model, tok = stub_model()
    engine = Engine(model, tok, ServeConfig(model_name=STUB, max_tokens_cap=4, default_max_tokens=2,
                                            max_body_bytes=300_000))
    with TestClient(build_app(engine, Policy("127.0.0.1", 80, allow_hosts=["testserver"])),
                    raise_server_exceptions=True) as c:
        yield c


def _http_property(client, body: bytes, ctype: str) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    with bounded():
        resp = client.post("/v1/chat/completions", content=body, headers=headers)
        text = resp.text
    assert resp.status_code < 500, text[:500]
    if resp.status_code >= 400:
        err = json.loads(text)["error"]
        assert isinstance(err["message"], str) and err["message"]
    elif "text/event-stream" in resp.headers.get("content-type", ""):
        assert text.rstrip().endswith("data: [DONE]") and '"error"' not in text, text[-500:]
    else:
        assert json.loads(text)["choices"][0]["message"]["role"] == "assistant"


# ---------------------------------------------------------------------------------------------------------------
# the tests: quick (default suite) and full (slow, CI)


def _run(prop, strategy, n: int, record_property, *args, warm_up=None) -> None:
    count = [0]

    @profile(n)
    @given(strategy)
    def check(example):
        count[0] += 1
        prop(*args, *example) if isinstance(example, tuple) else prop(*args, example)

    global WARMING
    if warm_up is not None:  # first-use imports (TRL, Math-Verify) are not the inputs' cost, nor interrupted
        WARMING = True
        try:
            prop(*args, *warm_up)
        finally:
            WARMING = False
    t0, c0 = time.perf_counter(), time.process_time()
    check()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    record_property("inputs", count[0])
    record_property("seconds", round(elapsed, 1))
    record_property("cpu_seconds", round(cpu, 1))
    print(f"\n{prop.__name__}: {count[0]} inputs in {elapsed:.1f} s ({cpu:.1f} s CPU)")
    assert count[0] >= n


SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None  # in memory: the commands fsync every output


def _tmp_case(prop):
    def with_dir(*example):
        with tempfile.TemporaryDirectory(dir=SCRATCH) as d:
            prop(Path(d), *example)
    with_dir.__name__ = prop.__name__
    return with_dir


@pytest.mark.parametrize("n", [pytest.param(QUICK, id="quick"), pytest.param(FULL, id="full", marks=pytest.mark.slow)])
def test_fuzz_jsonl_rows(n, record_property):
    warm = ("d.jsonl", b'{"id": "w", "question": "What is 1 + 1?", "reasoning": "1 + 1 = 2", "answer": "2"}\n')
    _run(_tmp_case(_jsonl_property), data_file(), n, record_property, warm_up=warm)


@pytest.mark.parametrize("n", [pytest.param(QUICK, id="quick"), pytest.param(FULL, id="full", marks=pytest.mark.slow)])
def test_fuzz_recipes(n, record_property):
    warm = yaml.safe_dump({**BASE_RECIPE, "sft": {**BASE_RECIPE["sft"], "trl": {"seed": 1}}})
    _run(_tmp_case(_recipe_property), recipe_text(), n, record_property, warm_up=(warm,))


@pytest.mark.parametrize("n", [pytest.param(QUICK, id="quick"), pytest.param(FULL, id="full", marks=pytest.mark.slow)])
def test_fuzz_http_bodies(n, client, record_property):
    _run(_http_property, http_body(), n, record_property, client, warm_up=(json.dumps(GOOD_REQUEST).encode(),
                                                                           "application/json"))


def test_the_generators_reach_the_hostile_shapes():
    """The suite is only as good as its inputs: the strategies do produce the shapes issue 20 listed."""
    seen = set()

    @settings(max_examples=1000, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # no deadline: wall-clock, a busy machine fails it
    @given(data_file(), recipe_text(), http_body())
    def look(f, r, h):
        name, content = f
        seen.update(k for k, hit in {"nan": b"NaN" in content, "bigint": b"9" * 5000 in content,
                                     "deep": b'{"a": ' * 150 in content, "csv": name.endswith(".csv"),
                                     "bomb": "*e, *e" in r, "dup": "seed: 1\nseed: 2" in r,
                                     "dotdot": "name: ..\n" in r, "inf": ".inf" in r,
                                     "deepjson": h[0].startswith(b"[[[["), "plain": h[1] == "text/plain",
                                     "surrogate": b"\\ud800" in h[0]}.items() if hit)

    look()
    assert seen >= {"nan", "bigint", "deep", "csv", "bomb", "dup", "inf", "deepjson", "plain"}, seen
