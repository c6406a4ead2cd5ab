"""Committed checkpoints: only fully written checkpoints are ever resumed from; retention after the commit."""

from types import SimpleNamespace

from thinktune.stages.callbacks import MARKER, CommitCheckpoints, latest_committed, remove_uncommitted


def make_ckpt(d, step, committed):
    c = d / f"checkpoint-{step}"
    c.mkdir()
    (c / "model.safetensors").write_bytes(b"x")
    if committed:
        (c / MARKER).write_text("{}")
    return c


def save(cb, d, step):
    make_ckpt(d, step, committed=False)  # the Trainer wrote it in place ...
    cb.on_save(None, SimpleNamespace(global_step=step, is_world_process_zero=True), None)  # ... then we commit


def test_commit_marks_points_latest_and_keeps_newest(tmp_path):
    cb = CommitCheckpoints(tmp_path, keep=2)
    for step in (10, 20, 30):
        save(cb, tmp_path, step)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-20", "checkpoint-30"]
    assert (tmp_path / "LATEST").read_text().strip() == "checkpoint-30"
    assert latest_committed(tmp_path) == tmp_path / "checkpoint-30"


def test_a_torn_checkpoint_is_never_chosen_and_is_removed(tmp_path):
    make_ckpt(tmp_path, 10, committed=True)
    make_ckpt(tmp_path, 20, committed=False)  # killed during the save: files there, no marker
    (tmp_path / "LATEST").write_text("checkpoint-20\n")  # even a pointer to it is not trusted
    assert latest_committed(tmp_path) == tmp_path / "checkpoint-10"
    removed = remove_uncommitted(tmp_path)
    assert [p.name for p in removed] == ["checkpoint-20"]
    assert not (tmp_path / "checkpoint-20").exists()


def test_no_committed_checkpoint(tmp_path):
    make_ckpt(tmp_path, 5, committed=False)
    assert latest_committed(tmp_path) is None
    assert latest_committed(tmp_path / "missing") is None


def test_retention_never_deletes_before_the_new_commit(tmp_path):
    cb = CommitCheckpoints(tmp_path, keep=1)
    save(cb, tmp_path, 10)
    make_ckpt(tmp_path, 20, committed=False)  # a save in progress (or killed): the old one must survive
    assert latest_committed(tmp_path) == tmp_path / "checkpoint-10"
    cb.on_save(None, SimpleNamespace(global_step=20, is_world_process_zero=True), None)
    assert [p.name for p in tmp_path.glob("checkpoint-*")] == ["checkpoint-20"]


def test_grpo_alerts_fire_once_after_a_streak_and_mark_the_logs(caplog):
    from thinktune.stages.callbacks import GRPOAlerts

    alerts = GRPOAlerts(zero_std=0.9, clipped=0.5, patience=3)
    state = SimpleNamespace(global_step=0)
    logs = []
    for zero_std in (0.95, 1.0, 0.5, 0.95, 0.92, 0.99, 1.0):  # the streak breaks once, then reaches 3
        state.global_step += 5
        row = {"frac_reward_zero_std": zero_std, "completions/clipped_ratio": 0.1}
        alerts.on_log(None, state, None, logs=row)
        logs.append(row)
    assert [r.get("alert_zero_std", 0) for r in logs] == [0, 0, 0, 0, 0, 1, 1]
    assert not any("alert_clipped" in r for r in logs)
    assert sum("identical rewards" in m for m in caplog.messages) == 1  # warned once
