"""Registered models; importing this package registers them all."""
from . import lenet  # noqa: F401  (registers the LeNets)
from .registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
