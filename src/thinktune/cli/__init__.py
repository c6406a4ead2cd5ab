"""The ``thinktune`` command line (typer + rich): routing and rendering only, the work lives in the library.

One module per command group; each imports :mod:`thinktune.cli.console` and the library, never another command
module (import-linter checks it). This package only assembles them into ``app``.
"""

from __future__ import annotations

from thinktune.cli import audit, data, decoding, experiments, label, main, report, rewards
from thinktune.cli.console import command_group

app = command_group("Build custom reasoning models: curate, SFT, GRPO, audit.",
                  pretty_exceptions_enable=False, add_completion=False)
app.command("run")(main.run_cmd)
app.add_typer(main.recipe_app, name="recipe")
app.command("export")(main.export_cmd)
app.command("version")(main.version_cmd)
app.add_typer(data.data_app, name="data")
app.add_typer(rewards.rewards_app, name="rewards")
app.command("audit")(audit.audit_cmd)
app.command("report")(report.report_cmd)
app.add_typer(experiments.experiments_app, name="experiments")
app.command("generate")(decoding.generate_cmd)
app.add_typer(decoding.tip_app, name="tip")
app.add_typer(decoding.steer_app, name="steer")
app.command("serve")(decoding.serve_cmd)
app.add_typer(label.label_app, name="label")
