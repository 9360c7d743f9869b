"""Models: ResNet-vd and ResNetV1c backbones, GCNet, and weight loading. Importing registers
them."""
from gcseg.models.gcnet import GCNet, GCNetHead, GlobalContextBlock
from gcseg.models.resnet_v1c import ResNet18_v1c, ResNet50_v1c, ResNet101_v1c, ResNet_v1c
from gcseg.models.resnet_vd import (ResNet18_vd, ResNet34_vd, ResNet50_vd, ResNet101_vd,
                                    ResNet152_vd, ResNet_vd)
from gcseg.models.hub import resolve_pretrained
from gcseg.models.weights import load_state_dict_file, load_weights, save_weights

__all__ = [
    "GCNet", "GCNetHead", "GlobalContextBlock", "ResNet_vd", "ResNet18_vd", "ResNet34_vd",
    "ResNet50_vd", "ResNet101_vd", "ResNet152_vd", "ResNet_v1c", "ResNet18_v1c", "ResNet50_v1c",
    "ResNet101_v1c", "load_state_dict_file", "load_weights",
    "resolve_pretrained", "save_weights",
]
