from pathlib import Path

import pytest

from tests.helpers.pipeline import SHARED


@pytest.fixture
def shared_data() -> Path:
    """The project's real data (../shared/data next to the repo); tests skip when it is absent."""
    if not (SHARED / "gsm8k_test.jsonl").is_file():
        pytest.skip(f"real data not found at {SHARED.resolve()} (shared/data is provided next to the repository)")
    return SHARED
