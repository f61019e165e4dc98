"""The kdrun model zoo: the CIFAR KD models and each task's own models (segmentation U-Nets,
denoisers, text encoders, ...). Importing this package imports every module in it, which
registers its builders (@register_model); a new file is all a new family needs."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
