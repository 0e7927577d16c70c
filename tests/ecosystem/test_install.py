"""`make install` gives a kioku that works from any directory: the binary on
a PATH prefix and the default model in the XDG data directory, found without
`--model` or KIOKU_MODEL. This builds the release binary (minutes, once)."""

import os
import subprocess

from conftest import REPO


def test_make_install_then_ask_from_another_directory(tmp_path):
    prefix, data_home = tmp_path / "prefix", tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("KIOKU_MODEL", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["XDG_DATA_HOME"] = str(data_home)
    subprocess.run(["make", "install", f"PREFIX={prefix}"], cwd=REPO, env=env, check=True, capture_output=True)
    installed = data_home / "kioku" / "models" / "kioku-tiny-en.safetensors"
    assert installed.is_file() and oct(installed.stat().st_mode & 0o777) == "0o644"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([str(prefix / "bin" / "kioku"), "ask", "--text", "What is the capital of France?", "--max-tokens", "12"],
                          cwd=elsewhere, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout, done.stdout
