"""The documentation the code cites lives in the repository: every `docs/X.md, "Section"` the source, tests,
benchmarks and experiments cite names a file and a heading that exist; no citation points outside the repository;
every relative link in the markdown files resolves."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r'(docs/[A-Za-z_]+\.md)((?:, "[^"]+")+)?')
BARE = re.compile(r'(?<![\w/])(METHODS|DESIGN|RELIABILITY|STYLE|ANCHORS)\.md')
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / p for p in out.split() if (ROOT / p).is_file()]


def headings(path: Path) -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.M)}


def test_every_cited_document_and_section_exists():
    files = tracked("src", "tests", "benchmarks", "experiments", "recipes", "README.md", "docs")
    assert files
    cited = 0
    for path in files:
        if path.suffix not in (".py", ".md", ".yaml", ".yml") or path == Path(__file__):
            continue
        text = " ".join(path.read_text(encoding="utf-8").split())  # a citation may wrap over lines
        for m in CITATION.finditer(text):
            doc = ROOT / m.group(1)
            assert doc.is_file(), f"{path.relative_to(ROOT)} cites {m.group(1)}, which does not exist"
            for section in re.findall(r'"([^"]+)"', m.group(2) or ""):
                assert section in headings(doc), f'{path.relative_to(ROOT)}: {m.group(1)} has no section "{section}"'
            cited += 1
    assert cited >= 40  # the code does cite the docs


def test_no_citation_points_outside_the_repository():
    for path in tracked("src", "tests", "benchmarks", "experiments", "recipes", "README.md", "docs", ".ci",
                        "pyproject.toml"):
        if path.suffix in (".jsonl", ".json", ".safetensors", ".steer", ".txt") or path == Path(__file__):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        assert "shared/docs" not in text, f"{path.relative_to(ROOT)} points at shared/docs"
        for m in BARE.finditer(text):
            if path.parent == ROOT / "docs" and (ROOT / "docs" / m.group(0)).is_file():
                continue  # a link between the docs themselves
            raise AssertionError(f"{path.relative_to(ROOT)} cites {m.group(0)} (use docs/<file>.md, \"<section>\")")


def test_relative_links_in_markdown_resolve():
    for path in tracked("*.md"):
        for target in LINK.findall(path.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (path.parent / target).exists(), f"{path.relative_to(ROOT)} links to {target}, which does not exist"
