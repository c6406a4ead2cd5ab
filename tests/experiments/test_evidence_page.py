"""The committed docs/EVIDENCE.md is exactly what `thinktune experiments table` makes from the committed summaries and
experiment files (issue 9: every number on the page traces to a summary and a recipe in the repository). A change to
an experiment file, a base recipe or a summary without regenerating the page fails here."""

from tests.helpers.pipeline import ROOT
from thinktune.experiments.spec import select
from thinktune.experiments.table import build_table


def test_committed_evidence_page_is_regenerated_from_the_committed_summaries():
    exps = select([], ROOT / "experiments", all_=True)
    assert len(exps) >= 7
    text, evaluated = build_table(exps, ROOT / "experiments" / "results", None, results_label="experiments/results")
    page = (ROOT / "docs" / "EVIDENCE.md").read_text(encoding="utf-8")
    assert text == page, "docs/EVIDENCE.md is stale: run `thinktune experiments table`"
    assert [r.verdict for r in evaluated if r.verdict == "pending"] == []  # every experiment has its full runs
