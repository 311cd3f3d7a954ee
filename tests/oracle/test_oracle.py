import pytest
import torch
from support import shared_dir

from seqgan.oracle.oracle import load_oracle, make_oracle, nll_oracle, sample_oracle

PARAMS = shared_dir() / "oracle" / "seqgan_oracle_params.npz"


def test_oracle_samples_are_likelier_under_the_oracle_than_uniform_tokens():
    oracle = make_oracle(200, 16, 16, seed=0)
    own = sample_oracle(oracle, 512, 12, generator=torch.Generator().manual_seed(1))
    assert own.shape == (512, 12)
    uniform = torch.randint(0, 200, (512, 12), generator=torch.Generator().manual_seed(2))
    assert nll_oracle(oracle, own) < nll_oracle(oracle, uniform) - 0.5


def test_oracle_sampling_is_seeded():
    oracle = make_oracle(100, 8, 8, seed=0)
    a = sample_oracle(oracle, 64, 10, generator=torch.Generator().manual_seed(3), batch_size=16)
    b = sample_oracle(oracle, 64, 10, generator=torch.Generator().manual_seed(3), batch_size=16)
    assert torch.equal(a, b)
    c = sample_oracle(oracle, 64, 10, generator=torch.Generator().manual_seed(4), batch_size=16)
    assert not torch.equal(a, c)


@pytest.mark.skipif(not PARAMS.exists(), reason=f"{PARAMS} not present")
def test_original_oracle_nll_of_its_own_samples_is_5_76():
    oracle = load_oracle(str(PARAMS))
    assert oracle.config.vocab_size == 5000
    samples = sample_oracle(oracle, 9984, 20, generator=torch.Generator().manual_seed(0))
    assert abs(nll_oracle(oracle, samples) - 5.76) < 0.03
