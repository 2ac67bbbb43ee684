"""deitctl: train, distill, fine-tune, evaluate, export and publish DeiT vision transformers."""

__version__ = "0.1.0"
