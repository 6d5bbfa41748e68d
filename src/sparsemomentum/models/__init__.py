"""Registered models; importing this package registers them all: the LeNets and the MLP
family (lenet.py), AlexNet-s/b, VGG16-C/D, the wide ResNets (CIFAR and 28x28 ones),
ResNet-50, and the character-level language models (language.py)."""

from . import alexnet, language, lenet, resnet, vgg, wide_resnet  # noqa: F401
from .registry import create_model, list_models, model_inputs, register_model

__all__ = ["create_model", "list_models", "model_inputs", "register_model"]
