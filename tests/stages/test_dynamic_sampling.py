"""DAPO dynamic sampling (docs/METHODS.md, "DAPO dynamic sampling"): zero-variance groups never reach the loss."""

import hashlib
import inspect
import random

import pytest
import torch

from thinktune.config import GRPOStage, TinyModelConfig
from thinktune.formatting import render
from thinktune.models import build_tiny
from thinktune.stages.dynamic_sampling import (
    KNOWN_KEYS,
    DynamicSamplingExhausted,
    dynamic_sampling_trainer,
    fill_batch,
    merge_rows,
)

CORPUS = [f"Compute {a} + {b}.\n" + render(f"{a} + {b} = {a + b}", str(a + b)) for a in range(20) for b in range(5)]
G = 4


# --- the pure filter: groups {0, 1, 0.5, 0.25} keep the last two ------------------------------------------------

def _group(acc: float) -> list[float]:
    right = round(acc * G)
    return [1.0] * right + [0.0] * (G - right)


def test_known_answer_accuracies_0_1_half_quarter_keep_the_last_two():
    filled = fill_batch(lambda r, missing: [_group(a) for a in (0, 1, 0.5, 0.25)], groups_needed=2, max_rounds=1)
    assert filled.kept == [(0, 2), (0, 3)]
    assert filled.dropped == 2
    assert filled.rounds == 1


def test_refills_from_later_rounds_and_stops_when_full():
    rounds = [[_group(0), _group(0.5)], [_group(1), _group(0.75), _group(0.25)], [_group(0.5)]]
    calls = []
    filled = fill_batch(lambda r, missing: calls.append((r, missing)) or rounds[r], groups_needed=3, max_rounds=5)
    assert filled.kept == [(0, 1), (1, 1), (1, 2)]
    assert filled.dropped == 2 and filled.rounds == 2
    assert calls == [(0, 3), (1, 2)]  # the third round is never sampled


def test_no_group_ever_qualifies_stops_after_max_rounds():
    calls = []
    with pytest.raises(DynamicSamplingExhausted, match=r"no group with reward variance in 3 round\(s\) \(12 groups"):
        fill_batch(lambda r, missing: calls.append(r) or [_group(0), _group(1)] * 2, groups_needed=2, max_rounds=3)
    assert calls == [0, 1, 2]


def test_short_batch_after_max_rounds_and_nan_rewards_are_unscored():
    filled = fill_batch(lambda r, missing: [[1.0, float("nan"), 1.0, 1.0], [0.0, 1.0, float("nan"), 0.0]],
                        groups_needed=3, max_rounds=2)
    assert filled.kept == [(0, 1), (1, 1)] and filled.dropped == 2 and filled.rounds == 2


def test_config_validates_max_rounds_and_is_left_out_of_the_fingerprint_when_off():
    assert "dynamic_sampling" not in GRPOStage().model_dump()  # completed runs keep their grpo fingerprint
    assert GRPOStage(dynamic_sampling={"enabled": True, "max_rounds": 4}).model_dump()["dynamic_sampling"] == {
        "enabled": True, "max_rounds": 4}
    with pytest.raises(Exception, match="dynamic_sampling.max_rounds"):
        GRPOStage(dynamic_sampling={"enabled": True, "max_rounds": 0})
    with pytest.raises(Exception, match="dynamic_sampling.oversample"):
        GRPOStage(dynamic_sampling={"enabled": True, "oversample": 2})


def test_merge_rows_repads_prompts_left_and_completions_right():
    a = {"prompt_ids": torch.tensor([[0, 5], [6, 7]]), "prompt_mask": torch.tensor([[0, 1], [1, 1]]),
         "completion_ids": torch.tensor([[8], [9]]), "completion_mask": torch.tensor([[1], [1]]),
         "advantages": torch.tensor([1.0, -1.0]), "num_items_in_batch": torch.tensor(2)}
    b = {"prompt_ids": torch.tensor([[4]]), "prompt_mask": torch.tensor([[1]]),
         "completion_ids": torch.tensor([[3, 2, 1]]), "completion_mask": torch.tensor([[1, 1, 1]]),
         "advantages": torch.tensor([0.5]), "num_items_in_batch": torch.tensor(3)}
    m = merge_rows([(a, [1]), (b, [0])], pad_token_id=0)
    assert m["prompt_ids"].tolist() == [[6, 7], [0, 4]] and m["prompt_mask"].tolist() == [[1, 1], [0, 1]]
    assert m["completion_ids"].tolist() == [[9, 0, 0], [3, 2, 1]]
    assert m["completion_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert m["advantages"].tolist() == [-1.0, 0.5]
    with pytest.raises(Exception, match="pixel_values"):
        merge_rows([({**a, "pixel_values": torch.zeros(2)}, [0])], pad_token_id=0)


# --- through TRL's real code path ------------------------------------------------------------------------------------

def _reward(prompts, completions, **kw):
    """'Always'-prompts: every completion scores 1 (zero variance); 'Mixed'-prompts: a random score."""
    return [1.0 if p.startswith("Always") else random.random() for p in prompts]


def _trainer(tmp_path, prompts, max_rounds, steps=2, record=None):
    from datasets import Dataset
    from trl import GRPOConfig

    random.seed(0)
    model, tok = build_tiny(TinyModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                                            vocab_size=280), CORPUS, seed=0)
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4 * G,
                      gradient_accumulation_steps=1, num_generations=G, max_completion_length=12,
                      learning_rate=1e-3, loss_type="dapo", beta=0.0, report_to=[], use_cpu=True,
                      save_strategy="no", disable_tqdm=True, logging_steps=1, shuffle_dataset=False, seed=0,
                      gradient_checkpointing=False, log_completions=False)
    base = dynamic_sampling_trainer(max_rounds)

    class Recording(base):
        generations = 0

        def _calculate_rewards(self, *a, **kw):
            type(self).generations += 1
            return super()._calculate_rewards(*a, **kw)

        def _compute_loss(self, model, inputs):
            if record is not None:
                record.append({k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in inputs.items()})
            return super()._compute_loss(model, inputs)

    trainer = Recording(model=model, reward_funcs=_reward, args=args,
                        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]), processing_class=tok)
    return trainer, tok


MIXED = [f"{'Always' if i % 2 == 0 else 'Mixed'} compute {i} + 1.\n" for i in range(16)]


def _prompt_texts(tok, batch):
    return [tok.decode(ids[mask.bool()]) for ids, mask in zip(batch["prompt_ids"], batch["prompt_mask"])]


@pytest.mark.parametrize("max_rounds", [1, 6])
def test_zero_variance_groups_never_reach_the_loss(tmp_path, max_rounds):
    record = []
    trainer, tok = _trainer(tmp_path, MIXED, max_rounds, record=record)
    trainer.train()
    assert len(record) == 2  # one micro-batch per step
    for batch in record:
        assert set(batch) <= KNOWN_KEYS
        weighted = batch["completion_mask"].sum(1) > 0
        texts = _prompt_texts(tok, batch)
        assert all(t.startswith("Mixed") for t, w in zip(texts, weighted) if w)  # every weighted row varies
        assert all(a == 0 for t, a in zip(texts, batch["advantages"]) if t.startswith("Always"))
        assert batch["num_items_in_batch"].item() == batch["completion_mask"].sum().item()  # normaliser: kept only
        n_weighted_groups = int(weighted.sum()) // G
        assert n_weighted_groups == (2 if max_rounds == 1 else 4)
    logged = [h for h in trainer.state.log_history if "dynamic_sampling/kept" in h]
    assert len(logged) == 2
    if max_rounds == 1:  # round 0 is Always, Mixed, Always, Mixed: two dropped, masked in as filler
        assert all(h["dynamic_sampling/kept"] == 2 and h["dynamic_sampling/dropped"] == 2 and
                   h["dynamic_sampling/filler"] == 2 and h["dynamic_sampling/rounds"] == 1 for h in logged)
        assert type(trainer).generations == 2
    else:  # refilled from extra rounds to a full batch of groups with variance
        assert all(h["dynamic_sampling/kept"] == 4 and h["dynamic_sampling/filler"] == 0 and
                   h["dynamic_sampling/dropped"] >= 2 and h["dynamic_sampling/rounds"] >= 2 for h in logged)
        assert type(trainer).generations > 2


def test_loss_equals_the_loss_of_the_variance_groups_alone(tmp_path):
    """The masked batch gives exactly the loss (and gradient) TRL computes on a batch of only the kept groups."""
    record = []
    trainer, tok = _trainer(tmp_path, MIXED, 1, steps=1, record=record)
    trainer.train()
    batch = record[0]
    kept = [i for i, m in enumerate(batch["completion_mask"].sum(1)) if m > 0]
    alone = merge_rows([(batch, kept)], tok.pad_token_id)
    alone["num_items_in_batch"] = alone["completion_mask"].sum()
    model = trainer.model

    def loss_and_grad(inputs):
        model.zero_grad()
        loss = trainer._compute_loss(model, inputs)
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    (l_masked, g_masked), (l_alone, g_alone) = loss_and_grad(batch), loss_and_grad(alone)
    assert l_masked == pytest.approx(l_alone, rel=1e-5, abs=1e-7)
    assert torch.allclose(g_masked, g_alone, rtol=1e-4, atol=1e-7)
    assert g_alone.abs().sum() > 0  # the kept groups do carry a gradient


def test_exhausted_when_no_group_ever_has_variance(tmp_path):
    always = [f"Always compute {i} + 1.\n" for i in range(8)]
    trainer, _ = _trainer(tmp_path, always, max_rounds=3)
    with pytest.raises(DynamicSamplingExhausted, match=r"in 3 round\(s\)"):
        trainer.train()
    assert type(trainer).generations == 3  # stopped after max_rounds, never spins


# --- guard: the TRL methods this extension overrides or relies on ------------------------------------------------------

# sha256 of inspect.getsource(...) under TRL 1.16. A mismatch means TRL changed a method dynamic sampling depends on.
TRL_SOURCES = {
    "_generate_and_score_completions": "1fa48922792dcd5c72da155cfe99db477771a7c61cde15519fe8c86d0cdc0b65",
    "_calculate_rewards": "736ae29b083840b5da2638b55ad1258659c644589991fe6a494131354952efef",
    "_compute_loss": "80295546bbdbf6f711acce7f6e69b0100ab40aa8f23ed8052cc564ff024e3e40",
    "_prepare_inputs": "f824e7fb0714795697c9b4d574de1e139dd5f4404c2554e92cf1db7f60fa6c96",
}


@pytest.mark.parametrize("method", sorted(TRL_SOURCES))
def test_trl_methods_dynamic_sampling_relies_on_are_unchanged(method):
    from trl import GRPOTrainer

    digest = hashlib.sha256(inspect.getsource(getattr(GRPOTrainer, method)).encode()).hexdigest()
    assert digest == TRL_SOURCES[method], (
        f"trl.GRPOTrainer.{method} changed (trl installed: {__import__('trl').__version__}). Re-check "
        f"src/thinktune/stages/dynamic_sampling.py against it: _calculate_rewards must still return the "
        f"process-gathered (completions × reward funcs) matrix; _generate_and_score_completions must still return "
        f"the keys in KNOWN_KEYS with prompts left-padded and completions right-padded, advantages per row and "
        f"num_items_in_batch = completion-mask tokens; _compute_loss (loss_type dapo) must still normalise by "
        f"inputs['num_items_in_batch'] and weight tokens by completion_mask; _prepare_inputs must still call "
        f"_generate_and_score_completions once per generation batch. Then record the new digest here.")
