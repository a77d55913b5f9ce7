import json
import os
import subprocess
import sys

import pytest


def run(*args):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "eta", *args], capture_output=True, text=True, env=env, timeout=300)


def test_generate_json_on_tiny(photo_path):
    out = run("generate", "--question", "What is this?", "--image", str(photo_path), "--profile", "tiny", "--json")
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"vanilla", "response", "s_pre", "s_post", "aligned"} <= set(payload)
    assert payload["stand_in"] is True and payload["aligned"] is True


@pytest.mark.parametrize("args,message", [
    (["--question", "Hi", "--image", "/nonexistent/x.png"], "/nonexistent/x.png"),
    (["--question", " "], "question is empty"),
    (["--question", "Hi", "--set", "eta.bogus=1"], "eta.bogus"),
    (["--question", "Hi", "--profile", "nope"], "unknown profile"),
])
def test_generate_errors(args, message):
    out = run("generate", "--profile", "tiny", *args) if "--profile" not in args else run("generate", *args)
    assert out.returncode == 2 and message in out.stderr


def test_list_models():
    out = run("list", "models", "--json")
    names = {row["name"] for row in json.loads(out.stdout)}
    assert {"llava-1.5-7b", "armorm", "clip-vit-l-14-336", "smollm2-llava", "tiny-mllama"} <= names
