"""seqgan: SeqGAN-family text GANs for dialogue response generation."""

__version__ = "0.1.0"
