"""Model registry: one mapping from a module's class name to its class.

A model is added by writing its module (a subclass of AnomalyModel, decorated with
@register_model) and its conf/model/<name>.yaml whose `module._target_` names the class. model.pt
stores the class name, and `itsr.predict` finds the class here to rebuild the network.
"""

from __future__ import annotations

MODEL_CLASSES: dict[str, type] = {}
# model.pt files written before the registry stored "ae" or "aae" for the module; they still load
LEGACY_MODULE_NAMES = {"ae": "AutoencoderModule", "aae": "AdversarialAutoencoderModule"}


def register_model(cls: type) -> type:
    """Class decorator: make a model known by its class name (to model.pt, predict and the tests)."""
    from itsr.models.base import AnomalyModel

    if not (isinstance(cls, type) and issubclass(cls, AnomalyModel)):
        raise TypeError(f"{cls!r} is not an AnomalyModel subclass; only those can be registered")
    known = MODEL_CLASSES.get(cls.__name__)
    if known is not None and known is not cls and known.__module__ != cls.__module__:
        raise ValueError(f"a model named {cls.__name__} is registered already ({known.__module__})")
    MODEL_CLASSES[cls.__name__] = cls
    return cls


def model_class(name: str) -> type:
    """The registered class of that name (or of a pre-registry "ae"/"aae"); KeyError names the known ones."""
    cls = MODEL_CLASSES.get(LEGACY_MODULE_NAMES.get(name, name))
    if cls is None:
        raise KeyError(f"no registered model {name!r}; known: {', '.join(sorted(MODEL_CLASSES))}")
    return cls


def registered_name(module) -> str:
    """The name model.pt stores for a module; a module of an unregistered class is refused."""
    name = type(module).__name__
    if MODEL_CLASSES.get(name) is not type(module):
        raise KeyError(
            f"{type(module).__module__}.{name} is not a registered model: decorate the class with "
            "@itsr.models.register_model so that model.pt can be loaded again"
        )
    return name
