"""Thin LightningModules around the networks of itsr.nets."""

from itsr.models.aae import AdversarialAutoencoderModule
from itsr.models.ae import AutoencoderModule
from itsr.models.base import AnomalyModel, NonFiniteLossError

__all__ = ["AdversarialAutoencoderModule", "AnomalyModel", "AutoencoderModule", "NonFiniteLossError"]
