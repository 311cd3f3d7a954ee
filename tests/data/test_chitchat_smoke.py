"""The one test that loads the whole chitchat corpus (40 MB of JSON) through the real CLI."""

import json

from support import run_cli


def test_prepare_tiny_on_chitchat(tmp_path, capsys):
    assert run_cli("prepare", "--config", "tiny", "--run-dir", tmp_path / "r", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dialogues"] == 60 and out["pairs"]["train"] > 500 and out["vocab_size"] <= 120


def test_run_script_maps_the_original_flags(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "run"
    bad = subprocess.run([sys.executable, str(script), "-a", "pretrain"], capture_output=True, text=True)
    assert bad.returncode == 2 and "needs -m generator|discriminator" in bad.stderr
    missing = subprocess.run([sys.executable, str(script), "-a", "train", "--run-dir", str(tmp_path / "none")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "seqgan prepare" in missing.stderr
