"""The one prefix-cached scorer: log-probabilities of forced answers under shared prefixes.

Every faithfulness and step-quality test of the audit is "score the answer under a modified prefix": early answering
truncates the chain, filler and paraphrase replace its tail, information gain adds one step at a time, calibration reads
the answer's probability after the full chain. All of them share a long *root* (the prompt plus the model's own chain)
and differ in a short *branch*: where the root is cut, what is appended after the cut (the ``suffix``: an answer cue,
filler, a paraphrase) and which tokens are scored (the ``target``: an answer and its close tag). :func:`score_branches`
computes the keys and values of every shared prefix once and lets every branch attend to them, so the battery costs a
small multiple of plain generation instead of one ``generate`` per perturbation (benchmarks/bench_audit.py measures it).

How: the root and all of its branches are packed into one sequence as a prefix tree (a trie): the root's tokens
first, then each branch's tokens, where a branch token's parent is the previous branch token or, for the first one,
root token ``cut - 1``; branches that start at the same cut with the same tokens (an answer cue followed by two
different answers) share those nodes. A 4-D attention mask lets each token attend to its ancestors only, and
``position_ids`` give each token its depth, so every branch sees exactly what a fresh forward pass over
``root[:cut] + suffix + target`` would see (the tests compare the two to 1e-5). This is tree attention as in
speculative decoding (SpecInfer, arXiv 2305.09781): the shared prefix's key/value states are computed once per
pass and reused by every branch. Logits are only computed at scored positions (the decoder's last hidden state
through the output embedding), never for whole sequences.

Use::

    roots = [prompt_ids + chain_ids]
    branches = [Branch(root=0, cut=len(prompt_ids), suffix=cue_ids, target=answer_ids)]  # answer without the chain
    scored = score_branches(model, roots, branches).branches
    scored[0].logprob, scored[0].greedy   # log p(answer | prompt, cue); would greedy decoding produce it?

``Scored.greedy`` is the teacher-forced greedy test: every target token is the argmax at its position. With a target
of ``answer + answer_close`` it says exactly whether greedy decoding after the prefix would write this answer and
close the block, which is how the audit reads "the forced answer" without generating (Lanham et al., *Measuring
Faithfulness in Chain-of-Thought Reasoning*, arXiv 2307.13702, force the answer by an argmax over option letters; this
is the same argmax for open-ended answers, one token at a time).

Limits (each raises a clear error): the attention implementation must accept a custom 4-D mask (``sdpa`` and
``eager`` do; tested on Qwen2 and Llama); sliding-window attention is not applied inside a packed tree (exact while
a tree is shorter than the window).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from thinktune.errors import ThinktuneError


@dataclass(frozen=True)
class Branch:
    """Score ``target`` after ``roots[root][:cut] + suffix``."""

    root: int  # index into the roots list
    cut: int  # root tokens kept (0..len(root))
    suffix: tuple[int, ...] = ()  # context tokens appended after the cut (not scored unless asked)
    target: tuple[int, ...] = ()  # scored tokens


@dataclass(frozen=True)
class Scored:
    target_logprobs: tuple[float, ...]  # log p(target_t | context, target_<t), nats
    target_greedy: tuple[bool, ...]  # target_t is the argmax at its position
    suffix_logprobs: tuple[float, ...] = ()  # log p(suffix_t | …), only with ``with_suffix=True``
    target_argmax: tuple[int, ...] = ()  # the argmax token at each target position

    @property
    def logprob(self) -> float:
        """Total log-probability of the target."""
        return float(sum(self.target_logprobs))

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood per target token (nats)."""
        return -self.logprob / len(self.target_logprobs) if self.target_logprobs else 0.0

    @property
    def greedy(self) -> bool:
        """Greedy decoding from the context would produce exactly the target."""
        return all(self.target_greedy)

    def head(self, n: int) -> Scored:
        """The same scores for the first ``n`` target tokens (a target that is a prefix of a longer one)."""
        return Scored(self.target_logprobs[:n], self.target_greedy[:n], self.suffix_logprobs, self.target_argmax[:n])


@dataclass(frozen=True)
class ScoreResult:
    branches: list[Scored]
    roots: list[tuple[float, ...]] | None = None  # log p(root_t | root_<t) for t >= 1, with ``with_roots=True``


class UnsupportedModel(ThinktuneError):
    """The model cannot be scored this way (reported as a one-line CLI error, not a traceback)."""


def _output_head(model) -> Callable[[torch.Tensor], torch.Tensor]:
    head = model.get_output_embeddings()
    if head is None:
        raise UnsupportedModel(f"{type(model).__name__} has no output embedding; cannot score answers")
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        return lambda h: torch.tanh(head(h) / cap) * cap
    return head


def _logprobs_at(head, hidden: torch.Tensor, tokens: torch.Tensor,
                 chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(token), argmax token) for N hidden states. hidden: (N, H); tokens: (N,)."""
    lps, top = [], []
    for i in range(0, hidden.shape[0], chunk):
        logits = head(hidden[i : i + chunk]).float()  # (n, V)
        tok = tokens[i : i + chunk]
        lps.append(torch.log_softmax(logits, dim=-1).gather(1, tok[:, None])[:, 0])
        top.append(logits.argmax(-1))
    if not lps:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.cat(lps), torch.cat(top)


class _Tree:
    """One root and its branches as a token trie. Node i: token, parent (-1 = none), position."""

    def __init__(self, root: Sequence[int]):
        self.tokens = list(root)
        self.parent = list(range(-1, len(root) - 1))
        self.pos = list(range(len(root)))
        self.n_root = len(root)
        self._child: dict[tuple[int, int], int] = {(i - 1, t): i for i, t in enumerate(root)}
        self.paths: list[list[int]] = []  # per added branch: the node of each suffix + target token

    def add(self, cut: int, seq: Sequence[int]) -> None:
        node, path = cut - 1, []
        for tok in seq:
            nxt = self._child.get((node, tok))
            if nxt is None:
                nxt = len(self.tokens)
                self.tokens.append(tok)
                self.parent.append(node)
                self.pos.append(self.pos[node] + 1 if node >= 0 else 0)
                self._child[(node, tok)] = nxt
            path.append(nxt)
            node = nxt
        self.paths.append(path)

    def mask(self):
        """(T, T) bool: node j attends to node i iff i is j or one of its ancestors."""
        import numpy as np

        T = len(self.tokens)
        m = np.zeros((T, T), dtype=bool)
        m[: self.n_root, : self.n_root] = np.tril(np.ones((self.n_root, self.n_root), dtype=bool))
        for j in range(self.n_root, T):
            p = self.parent[j]
            if p >= 0:
                m[j] = m[p]
            m[j, j] = True
        return m


def _check_attention(model) -> None:
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in (None, "sdpa", "eager"):
        raise UnsupportedModel(f"the audit scorer needs a custom 4-D attention mask; attn_implementation={impl!r} "
                                  "does not take one (load the model with attn_implementation='sdpa')")


@torch.no_grad()
def score_branches(
    model,
    roots: Sequence[Sequence[int]],
    branches: Sequence[Branch],
    batch_size: int = 64,
    pad_id: int = 0,
    with_suffix: bool = False,
    with_roots: bool = False,
    on_batch: Callable[[int], None] | None = None,
    max_tokens: int = 2048,
) -> ScoreResult:
    """Score every branch; each root and its branches are one packed prefix tree.

    ``batch_size`` bounds the trees of one forward pass and ``max_tokens`` their padded tokens (one oversized tree
    still runs alone; on CPU, passes of ~2k tokens were as fast per token as larger ones and pad less).
    ``with_suffix`` also returns the suffix tokens' log-probabilities, ``with_roots`` every root token's (both for
    whole-sequence perplexities); ``on_batch(n_roots)`` reports progress.
    """
    if any(len(r) == 0 for r in roots):
        raise ValueError("roots must not be empty (put the first tokens in the root, not in the suffix)")
    for i, b in enumerate(branches):
        if not 0 <= b.root < len(roots) or not 0 <= b.cut <= len(roots[b.root]):
            raise ValueError(f"branch {i}: root {b.root} / cut {b.cut} out of range")
        if b.cut == 0 and (b.target and not b.suffix or with_suffix and b.suffix):
            raise ValueError(f"branch {i}: the first token of a sequence has no context to be scored against")
    _check_attention(model)
    by_root: dict[int, list[int]] = defaultdict(list)
    for i, b in enumerate(branches):
        by_root[b.root].append(i)
    if with_roots:
        for r in range(len(roots)):
            by_root.setdefault(r, [])
    trees: dict[int, _Tree] = {}
    for r, idx in by_root.items():
        tree = trees[r] = _Tree(roots[r])
        for i in idx:
            tree.add(branches[i].cut, branches[i].suffix + branches[i].target)
    decoder, head = model.get_decoder(), _output_head(model)
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    was_training = model.training
    model.eval()
    out: list[Scored | None] = [None] * len(branches)
    root_lps: list[tuple[float, ...]] | None = [()] * len(roots) if with_roots else None
    order = sorted(trees, key=lambda r: len(trees[r].tokens))
    try:
        start = 0
        while start < len(order):
            end = start + 1
            while (end < len(order) and end - start < batch_size
                   and (end - start + 1) * len(trees[order[end]].tokens) <= max_tokens):
                end += 1
            chunk = order[start:end]
            _score_trees(decoder, head, device, dtype, [trees[r] for r in chunk], [by_root[r] for r in chunk],
                         branches, pad_id, with_suffix, out, root_lps, chunk)
            if on_batch:
                on_batch(len(chunk))
            start = end
    finally:
        model.train(was_training)
    assert all(s is not None for s in out)
    return ScoreResult(branches=out, roots=root_lps)  # type: ignore[arg-type]


def _score_trees(decoder, head, device, dtype, trees: list[_Tree], idxs: list[list[int]], branches, pad_id,
                 with_suffix, out, root_lps, root_ids) -> None:
    import numpy as np

    B, T = len(trees), max(len(t.tokens) for t in trees)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    pos = torch.zeros((B, T), dtype=torch.long)
    allowed = np.zeros((B, T, T), dtype=bool)
    allowed[:, np.arange(T), np.arange(T)] = True  # padding attends to itself only (no empty rows)
    for i, t in enumerate(trees):
        n = len(t.tokens)
        ids[i, :n] = torch.tensor(t.tokens, dtype=torch.long)
        pos[i, :n] = torch.tensor(t.pos, dtype=torch.long)
        allowed[i, :n, :n] = t.mask()
    mask = torch.zeros((B, 1, T, T), dtype=dtype)
    mask.masked_fill_(~torch.from_numpy(allowed)[:, None], torch.finfo(dtype).min)  # additive: 0 = attend
    hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                     use_cache=False).last_hidden_state  # (B, T, H)
    # The state that predicts node j's token is its parent's state.
    sel_b, sel_p, sel_tok = [], [], []
    for i, (t, idx) in enumerate(zip(trees, idxs)):
        for path, j in zip(t.paths, idx):
            b = branches[j]
            lo = 0 if with_suffix else len(b.suffix)
            for node in path[lo:]:
                sel_b.append(i)
                sel_p.append(t.parent[node])
                sel_tok.append(t.tokens[node])
        if root_lps is not None:
            n = t.n_root
            sel_b.extend([i] * (n - 1))
            sel_p.extend(range(n - 1))
            sel_tok.extend(t.tokens[1:n])
    lp, top = _logprobs_at(head, hidden[torch.tensor(sel_b, dtype=torch.long, device=device),
                                        torch.tensor(sel_p, dtype=torch.long, device=device)],
                           torch.tensor(sel_tok, dtype=torch.long, device=device))
    lp, top = lp.tolist(), top.tolist()
    k = 0
    for i, (t, idx) in enumerate(zip(trees, idxs)):
        for j in idx:
            b = branches[j]
            n_suffix = len(b.suffix) if with_suffix else 0
            n = n_suffix + len(b.target)
            arg = tuple(top[k + n_suffix : k + n])
            out[j] = Scored(tuple(lp[k + n_suffix : k + n]), tuple(a == t for a, t in zip(arg, b.target)),
                            tuple(lp[k : k + n_suffix]), arg)
            k += n
        if root_lps is not None:
            n = t.n_root - 1
            root_lps[root_ids[i]] = tuple(lp[k : k + n])
            k += n


class BranchSet:
    """Collects branches from several tests, merging duplicates and targets that are prefixes of one another.

    ``add`` returns a handle; after :meth:`score`, ``result(handle)`` gives that request's :class:`Scored`. Early
    answering (answer + close tag) and information gain (answer tokens only) at the same cut share one row.

    ``space_at=p`` makes the greedy test of that request tolerate one whitespace token before target position p: a
    model that writes ``2\\n</answer>`` answers "2" just as ``2</answer>`` does (the parser strips the answer).
    Where the first pass finds a whitespace argmax exactly at p, a second pass scores the target's rest after it.
    """

    def __init__(self) -> None:
        self.roots: list[tuple[int, ...]] = []
        self._root_index: dict[tuple[int, ...], int] = {}
        self._requests: list[tuple[tuple[int, int, tuple[int, ...]], tuple[int, ...]]] = []
        self._space_at: dict[int, int] = {}
        self._scored: dict[tuple[tuple[int, int, tuple[int, ...]], tuple[int, ...]], Scored] = {}
        self._tolerated: set[tuple[tuple[int, int, tuple[int, ...]], tuple[int, ...], int]] = set()

    def root(self, ids: Sequence[int]) -> int:
        key = tuple(ids)
        if key not in self._root_index:
            self._root_index[key] = len(self.roots)
            self.roots.append(key)
        return self._root_index[key]

    def add(self, root: int, cut: int, suffix: Sequence[int], target: Sequence[int],
            space_at: int | None = None) -> int:
        self._requests.append(((root, cut, tuple(suffix)), tuple(target)))
        if space_at is not None:
            self._space_at[len(self._requests) - 1] = space_at
        return len(self._requests) - 1

    def __len__(self) -> int:
        return len(self._requests)

    def score(self, model, batch_size: int = 64, pad_id: int = 0,
              on_batch: Callable[[int], None] | None = None, space_ids: frozenset[int] = frozenset()) -> int:
        """Run the scorer; returns the number of branch rows actually scored (after merging).

        ``space_ids``: the tokenizer's whitespace-only tokens, for requests added with ``space_at``.
        """
        by_ctx: dict[tuple[int, int, tuple[int, ...]], set[tuple[int, ...]]] = defaultdict(set)
        for ctx, target in self._requests:
            by_ctx[ctx].add(target)
        rows: list[tuple[tuple[int, int, tuple[int, ...]], tuple[int, ...]]] = []
        for ctx, targets in by_ctx.items():
            ordered = sorted(targets, key=len, reverse=True)
            kept: list[tuple[int, ...]] = []
            for t in ordered:  # a target that is a prefix of a kept one is read from it
                if not any(k[: len(t)] == t for k in kept):
                    kept.append(t)
            rows.extend((ctx, t) for t in kept)
        branches = [Branch(root=c[0], cut=c[1], suffix=c[2], target=t) for c, t in rows]
        scored = score_branches(model, self.roots, branches, batch_size, pad_id, on_batch=on_batch).branches
        full = defaultdict(list)
        for (ctx, t), s in zip(rows, scored):
            full[ctx].append((t, s))
        for ctx, target in self._requests:
            for t, s in full[ctx]:
                if t[: len(target)] == target:
                    self._scored[(ctx, target)] = s.head(len(target))
                    break
        retry: dict[tuple[tuple[int, int, tuple[int, ...]], tuple[int, ...], int], Branch] = {}
        for h, p in self._space_at.items():
            ctx, target = self._requests[h]
            s = self._scored[(ctx, target)]
            if (space_ids and p < len(target) and all(s.target_greedy[:p]) and not s.target_greedy[p]
                    and s.target_argmax[p] in space_ids):
                spaced = ctx[2] + target[:p] + (s.target_argmax[p],)
                retry[(ctx, target, p)] = Branch(ctx[0], ctx[1], spaced, target[p:])
        if retry:
            again = score_branches(model, self.roots, list(retry.values()), batch_size, pad_id).branches
            self._tolerated = {key for key, s in zip(retry, again) if s.greedy}
        return len(branches) + len(retry)

    def result(self, handle: int) -> Scored:
        ctx, target = self._requests[handle]
        s = self._scored[(ctx, target)]
        if (ctx, target, self._space_at.get(handle)) in self._tolerated:
            return Scored(s.target_logprobs, (True,) * len(target), s.suffix_logprobs, s.target_argmax)
        return s


def answer_logprobs(model, tokenizer, prefixes: Sequence[str], answers: Sequence[str],
                    batch_size: int = 64) -> list[Scored]:
    """Text convenience: score ``answers[i]`` after ``prefixes[i]``.

    Each text is tokenized on its own (no special tokens added) and the token ids are concatenated. A prefix whose
    tokens begin a longer prefix shares that prefix's cached forward pass.
    """
    if len(prefixes) != len(answers):
        raise ValueError(f"{len(prefixes)} prefixes but {len(answers)} answers")
    ids = [tuple(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prefixes]
    tgt = [tuple(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers]
    # In sorted order, a sequence that is a prefix of others is followed by one that starts with it.
    uniq = sorted(set(ids))
    owner: dict[tuple[int, ...], tuple[int, ...]] = {}
    for i in range(len(uniq) - 1, -1, -1):
        p = uniq[i]
        nxt = uniq[i + 1] if i + 1 < len(uniq) else None
        owner[p] = owner[nxt] if nxt is not None and nxt[: len(p)] == p else p
    bset = BranchSet()
    handles = [bset.add(bset.root(owner[p]), len(p), (), t) for p, t in zip(ids, tgt)]
    bset.score(model, batch_size, tokenizer.pad_token_id or 0)
    return [bset.result(h) for h in handles]
