"""Registered models; importing this package registers them all."""

from . import (
    alexnet,  # noqa: F401  (registers alexnet-s, alexnet-b)
    lenet,  # noqa: F401  (registers the LeNets)
    resnet,  # noqa: F401  (registers resnet50)
    vgg,  # noqa: F401  (registers vgg16-c, vgg16-d)
    wide_resnet,  # noqa: F401  (registers wrn-16-8, wrn-16-10, wrn-22-8, wrn-28-2)
)
from .registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
