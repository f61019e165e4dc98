"""The CIFAR KD zoo (importing this package registers every builder)."""

# imported for the side effect of their @register_model decorators
from kdrun.models.zoo import (mobilenetv2_cifar, resnet_cifar, shufflenet,  # noqa: F401
                              vgg_cifar, wrn)
