"""A tiny random Qwen2 model whose tokenizer knows the switch words (built once per session, < 1 s).

Its matrices are re-drawn with a large standard deviation so that its greedy output varies with the prompt and
is not blank (the default 0.02 initialisation repeats one whitespace token whatever the prompt).
"""

import pytest

CORPUS = [
    "Alternatively, we could add the numbers. Wait, that is wrong. alternatively subtract them.",
    "Question: what is 3 + 4? Let us think step by step. 3 + 4 = 7. The answer is 7.",
    "<think>\nstep one\nstep two\n</think>\n<answer>42</answer>",
    "However the train leaves at 5. But then it waits. Hmm, alternate routes exist.",
] * 4


@pytest.fixture(scope="session")
def tiny():
    import torch

    from thinktune.config import TinyModelConfig
    from thinktune.models import build_tiny

    torch.manual_seed(0)
    cfg = TinyModelConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_layers=3, num_heads=4,
                          max_positions=256)
    model, tok = build_tiny(cfg, CORPUS, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.15)
    model.eval()
    return model, tok
