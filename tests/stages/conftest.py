import pytest

from tests.helpers.pipeline import reduced_recipe


@pytest.fixture
def recipe_factory(tmp_path):
    def make(name="qs", **over):
        return reduced_recipe(tmp_path, name, **over)
    return make
