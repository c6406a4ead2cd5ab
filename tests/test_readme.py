"""The README's two commands are the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bash_blocks(text):
    return re.findall(r"```bash\n(.*?)\n```", text, re.DOTALL)


def test_ci_runs_the_readme_test_command():
    blocks = bash_blocks((ROOT / "README.md").read_text())
    test_cmd = next(b for b in blocks if "pytest" in b)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()
    assert "torch==2.13.0" in test_cmd


def test_readme_quickstart_command_runs_the_quickstart_recipe():
    blocks = bash_blocks((ROOT / "README.md").read_text())
    quick = blocks[0]
    assert "thinktune run recipes/quickstart.yaml" in quick and "torch==2.13.0" in quick
    assert (ROOT / "recipes" / "quickstart.yaml").exists()


def test_readme_is_for_users_and_at_most_12_kb():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024, "measurements and their history belong in docs/RESULTS.md"
    for section in ("## Two commands", "## The quickstart", "## Quickstart results", "## A recipe, walked through",
                    "## Commands", "## Extending", "## Scaling out", "## Layout"):
        assert section in text
    for doc in ("docs/RESULTS.md", "docs/EXTENDING.md", "docs/ARCHITECTURE.md", "docs/METHODS.md"):
        assert f"]({doc}" in text and (ROOT / doc).is_file()
