"""`seqgan oracle` end to end on the tiny preset: figures, curve, exact resume."""

import json

import torch
from support import run_cli

from seqgan.rundir import RunDir


def test_oracle_tiny_end_to_end_and_resume(tmp_path, capsys):
    a = tmp_path / "a"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", a, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"oracle_self_nll", "mle_nll_oracle", "adversarial_nll_oracle", "curve"}
    phases = [c["phase"] for c in out["curve"]]
    assert "mle" in phases and "adversarial" in phases and out["complete"]
    assert out["oracle_self_nll"] < out["mle_nll_oracle"]  # the oracle knows its own data best
    # the same run, stopped after the MLE phase and resumed, reaches the same generator
    b = tmp_path / "b"
    assert run_cli("oracle", "--config", "tiny", "--run-dir", b, "oracle.d_pretrain_rounds=0",
                   "oracle.adv_rounds=0") == 0
    assert run_cli("oracle", "--config", "tiny", "--run-dir", b, "--json") == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["curve"] == out["curve"]
    wa = torch.load(RunDir(a).checkpoint("oracle", "last"), weights_only=True)["model"]
    wb = torch.load(RunDir(b).checkpoint("oracle", "last"), weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
