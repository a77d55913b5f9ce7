import re
import tomllib
from pathlib import Path

import pytest
import yaml

from eta import config
from eta.config import ConfigError, load_profile

ROOT = Path(__file__).resolve().parent.parent
PAPER_MD = ROOT.parent / "shared" / "PAPER.md"


def test_profiles_load_strictly():
    assert set(config.profile_names()) >= {"tiny", "local", "paper"}
    for name in config.profile_names():
        assert load_profile(name).name == name


def test_paper_profile_equals_the_paper():
    p = load_profile("paper")
    e = p.eta
    assert (e.tau_pre, e.tau_post, e.rule, e.text_only_rule) == (0.16, 0.06, "both", "post")
    assert (e.num_candidates, e.top_k, e.temperature, e.alpha) == (5, 5, 1.5, 1.0)
    assert (e.max_sentence_tokens, e.max_new_tokens, e.sentence_end) == (70, 1024, ["."])
    assert e.prefix == "As an AI assistant"
    assert (e.shallow, e.deep, e.clip_guide) == (True, True, True)
    assert p.models.vlm == "llava-1.5-7b" and p.models.reward_model == "armorm"
    assert p.models.clip == "clip-vit-l-14-336" and not p.stand_in
    assert e.prompts.safety.startswith("The image contains unsafe/porn/violent/politic/")
    assert "pricacy" in e.prompts.post and "pricacy" in e.prompts.deep


@pytest.mark.skipif(not PAPER_MD.exists(), reason="the method text lives beside the checkout")
def test_prompts_are_byte_exact_with_the_method_text():
    text = PAPER_MD.read_text()
    quoted = dict(re.findall(r"- (SAFETY_PROMPT|POST_PROMPT|DEEP_PROMPT)[^`]*`([^`]+)`", text))
    prompts = load_profile("paper").eta.prompts
    assert quoted["SAFETY_PROMPT"] == prompts.safety
    assert quoted["POST_PROMPT"] == prompts.post
    assert quoted["DEEP_PROMPT"] == prompts.deep


def write(tmp_path, data) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"'eta\.tau_pree'"):
        load_profile(write(tmp_path, {"eta": {"tau_pree": 0.1}}))


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"'eta\.num_candidates' must be int"):
        load_profile(write(tmp_path, {"eta": {"num_candidates": "five"}}))
    with pytest.raises(ConfigError, match=r"'eta\.rule' must be one of"):
        load_profile(write(tmp_path, {"eta": {"rule": "all"}}))
    with pytest.raises(ConfigError, match=r"'eta\.deep' must be bool"):
        load_profile(write(tmp_path, {"eta": {"deep": 1}}))


def test_int_is_accepted_for_float(tmp_path):
    assert load_profile(write(tmp_path, {"eta": {"tau_post": 1}})).eta.tau_post == 1.0


def test_unknown_profile_lists_known():
    with pytest.raises(ConfigError, match="known profiles: .*local.*paper.*tiny"):
        load_profile("nope")


def test_overrides_are_checked():
    p = load_profile("tiny", {"eta.tau_pre": 0.3, "eta.sentence_end": [".", "!"]})
    assert p.eta.tau_pre == 0.3 and p.eta.sentence_end == [".", "!"]
    with pytest.raises(ConfigError, match="unknown key 'eta.nope'"):
        load_profile("tiny", {"eta.nope": 1})
    with pytest.raises(ConfigError, match="must be float"):
        load_profile("tiny", {"eta.tau_pre": "high"})
    assert config.parse_override("eta.max_new_tokens=8") == ("eta.max_new_tokens", 8)


def normalise(req: str) -> str:
    return re.split(r"[<>=!~\[ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {normalise(r) for r in pip_list if not r.startswith("-e")}
    assert listed == wanted
