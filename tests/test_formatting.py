"""The one parser: layout rules, leniency choices and the special-token pitfall (docs/ARCHITECTURE.md, "Data model")."""

import pytest

from thinktune.formatting import DEFAULT_FORMAT, CompletionFormat, parse_completion, render, split_steps


def test_render_then_parse_round_trips():
    text = render("12 + 5 = 17\n17 - 3 = 14", "14")
    p = parse_completion(text)
    assert p.well_formed
    assert p.answer == "14"
    assert p.reasoning == "12 + 5 = 17\n17 - 3 = 14"
    assert p.steps == ["12 + 5 = 17", "17 - 3 = 14"]


@pytest.mark.parametrize(
    "text, answer, well_formed",
    [
        ("<think>x</think> <answer>5</answer>", "5", True),  # R1 template spacing
        ("<think>x</think><answer>5</answer>", "5", True),  # lenient: no space (Dr. GRPO's grader wants one)
        ("<answer>5</answer>", "5", False),  # no reasoning
        ("<think></think><answer>5</answer>", "5", False),  # empty think block
        ("<think>  \n </think><answer>5</answer>", "5", False),  # whitespace-only think block
        ("<think>x</think><answer>5</answer><answer>6</answer>", None, False),  # two answers: never pick one
        ("<think>x</think><answer>5</answer> and more", "5", False),  # text after the answer
        ("preamble <think>x</think><answer>5</answer>", "5", False),  # text before the think block
        ("<think>x</think> middle <answer>5</answer>", "5", False),  # text between blocks
        ("<think>x</think><think>y</think><answer>5</answer>", "5", False),  # duplicated think blocks
        ("<think>x<answer>5</answer>", "5", False),  # unclosed think
        ("<think>x</think><answer>5", None, False),  # unclosed answer
        ("<think>x</think><answer></answer>", "", False),  # empty answer
        ("<answer>5</answer><think>x</think>", "5", False),  # wrong order
        ("<think>a <think> b</think><answer>5</answer>", "5", False),  # nested/stray tag
        ("", None, False),
    ],
)
def test_parse_table(text, answer, well_formed):
    p = parse_completion(text)
    assert p.answer == answer
    assert p.well_formed is well_formed


def test_prefilled_think_is_not_held_against_the_completion():
    text = "12 + 5 = 17\n</think>\n<answer>17</answer>"
    assert not parse_completion(text).well_formed
    p = parse_completion(text, think_prefilled=True)
    assert p.well_formed and p.answer == "17" and p.steps == ["12 + 5 = 17"]


def test_custom_tags():
    fmt = CompletionFormat("<reasoning>", "</reasoning>", "<final>", "</final>")
    text = render("a\nb", "7", fmt)
    assert text.startswith("<reasoning>")
    p = parse_completion(text, fmt)
    assert p.well_formed and p.answer == "7"
    assert not parse_completion(text, DEFAULT_FORMAT).well_formed


def test_split_steps_drops_blank_lines():
    assert split_steps("a\n\n  b  \n\t\n") == ["a", "b"]


def test_tags_survive_tiny_tokenizer_decode_with_skip_special_tokens():
    """The TRL pitfall: tags registered as special tokens vanish when decoded with skip_special_tokens=True."""
    from thinktune.models import build_tiny_tokenizer

    text = render("1 + 2 = 3", "3")
    tok = build_tiny_tokenizer([text] * 20, vocab_size=300)
    ids = tok(text + tok.eos_token, add_special_tokens=False)["input_ids"]
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert decoded == text
    assert parse_completion(decoded).answer == "3"
