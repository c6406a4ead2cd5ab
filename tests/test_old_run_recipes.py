"""A run directory written before keys were renamed stays readable (report, export, benchmarks read its
recipe.yaml), while a recipe a user writes is still held to today's names."""

import pytest
import yaml

from tests.helpers.pipeline import reduced_recipe
from thinktune.config import load_recipe, resolved_dict
from thinktune.context import read_run_recipe
from thinktune.errors import RecipeError


def test_first_release_run_recipe_reads_with_todays_names(tmp_path):
    recipe = load_recipe(reduced_recipe(tmp_path, "old", grpo={"reward_probes": False, "reward_probe_items": 7},
                                        audit={"chance_corrected": True}))
    raw = resolved_dict(recipe)
    g, a = raw["grpo"], raw["audit"]
    g["reward_audit"], g["reward_audit_items"] = g.pop("reward_probes"), g.pop("reward_probe_items")
    a["bias_normalised"] = a.pop("chance_corrected")
    raw["report"] = {**(raw.get("report") or {}), "score_rewards": True}
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    back = read_run_recipe(run)
    assert back.grpo.reward_probes is False and back.grpo.reward_probe_items == 7
    assert back.audit.chance_corrected is True
    assert resolved_dict(back) == resolved_dict(recipe)


def test_a_users_recipe_with_an_old_name_is_still_refused(tmp_path):
    path = reduced_recipe(tmp_path, "u")
    raw = yaml.safe_load(path.read_text())
    raw["grpo"]["reward_audit"] = False
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RecipeError, match="renamed to 'reward_probes'"):
        load_recipe(path)
