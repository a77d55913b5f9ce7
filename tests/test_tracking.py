"""W&B tracking: offline by default, disabled honoured, failed runs, no secrets in config or files."""

from __future__ import annotations

from pathlib import Path

import pytest

from eta import tracking
from eta.config import load_profile

SECRET = "sk-test-SECRET123"


@pytest.fixture
def wandb_env(tmp_path, monkeypatch) -> Path:
    """No credentials anywhere; runs go to a temporary directory."""
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "ETA_RUN_ID", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return tmp_path / "wb"


@pytest.fixture(scope="module")
def profile():
    return load_profile("tiny")


def only_run(wandb_dir: Path) -> Path:
    runs = tracking.offline_runs(wandb_dir)
    assert len(runs) == 1, runs
    return runs[0]


def test_secret_key_detection():
    for key in ("api_key", "OPENAI_API_KEY", "hf_token", "hfToken", "password", "client_secret", "apiKey"):
        assert tracking.looks_secret(key), key
    for key in ("max_new_tokens", "max_sentence_tokens", "top_k", "tau_pre", "keyboard", "monkey"):
        assert not tracking.looks_secret(key), key


def test_strip_secrets_removes_keys_and_redacts_env_values():
    config = {"api_key": "x", "nested": {"password": "p", "max_new_tokens": 5, "list": [{"hf_token": 1}]},
              "note": f"called with {SECRET}"}
    clean = tracking.strip_secrets(config, secrets=[SECRET])
    assert clean == {"nested": {"max_new_tokens": 5, "list": [{}]}, "note": f"called with {tracking.REDACTED}"}


def test_mode_offline_without_credentials_online_with_them(tmp_path):
    assert tracking.resolve_mode({"NETRC": str(tmp_path / "none")}) == "offline"
    assert tracking.resolve_mode({"WANDB_API_KEY": "k" * 40}) == "online"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    assert tracking.resolve_mode({"NETRC": str(netrc)}) == "online"
    assert tracking.resolve_mode({"NETRC": str(netrc), "WANDB_MODE": "disabled"}) == "disabled"
    assert tracking.resolve_mode({"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "offline"}) == "offline"


def test_offline_run_holds_config_summary_tags_and_no_secret(wandb_env, profile, monkeypatch):
    monkeypatch.setenv("ETA_RUN_ID", "run-42")
    params = {"benchmark": "embedded-clip-study", "limit": 3, "api_key": SECRET, "comment": f"key {SECRET}"}
    run = tracking.start_run("00_demo", profile, params, stand_in=True, model_names={"clip": "tiny-clip"})
    assert run.settings.mode == "offline"
    tracking.log_summary(run, {"embedded-clip-study/auc": 0.75})
    with pytest.raises(ValueError, match="benchmark/metric"):
        tracking.log_summary(run, {"auc": 0.5})
    tracking.finish_run(run)

    data = tracking.read_offline_run(only_run(wandb_env))
    assert data["state"] == "finished"
    assert data["summary"]["embedded-clip-study/auc"] == pytest.approx(0.75)
    config = data["config"]
    assert config["notebook"] == "00_demo" and config["run_id"] == "run-42"
    assert config["profile"]["name"] == "tiny"
    assert config["profile"]["eta"]["max_new_tokens"] == profile.eta.max_new_tokens  # not taken for a token
    assert config["params"]["benchmark"] == "embedded-clip-study"
    assert "api_key" not in config["params"]
    assert config["params"]["comment"] == f"key {tracking.REDACTED}"
    assert set(data["tags"]) == {"tiny", "tiny-clip", "stand-in"}
    assert data["project"] == tracking.DEFAULT_PROJECT
    assert "NOT the paper's models" in data["notes"]
    leaks = [p for p in wandb_env.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == []


def test_failed_block_finishes_run_as_failed_and_reraises(wandb_env, profile):
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.tracked("00_fail", profile, {}, stand_in=False, model_names={"vlm": "tiny-llava"}) as run:
            tracking.log_summary(run, {"x/y": 1.0})
            raise RuntimeError("boom")
    data = tracking.read_offline_run(only_run(wandb_env))
    assert data["state"] == "failed"
    assert data["exit_code"] == 1
    assert not data.get("notes")  # no stand-in note for the paper's models


def test_disabled_mode_writes_nothing(wandb_env, profile, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with tracking.tracked("00_off", profile, {"a": 1}, stand_in=True) as run:
        tracking.log_summary(run, {"x/y": 1.0})
    assert tracking.offline_runs(wandb_env) == []
