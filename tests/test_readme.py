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
