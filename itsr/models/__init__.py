"""Thin LightningModules around the networks of itsr.nets, and the registry that names them."""

from itsr.models.aae import AdversarialAutoencoderModule
from itsr.models.ae import AutoencoderModule
from itsr.models.base import AnomalyModel, NonFiniteLossError
from itsr.models.registry import MODEL_CLASSES, model_class, register_model

__all__ = [
    "MODEL_CLASSES",
    "AdversarialAutoencoderModule",
    "AnomalyModel",
    "AutoencoderModule",
    "NonFiniteLossError",
    "model_class",
    "register_model",
]
