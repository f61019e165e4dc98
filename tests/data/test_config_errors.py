"""Bad data config fails before any data is read, naming the key."""

from __future__ import annotations

import pytest

from kdrun.data import DATASETS, DataConfig, build_data


@pytest.mark.parametrize("overrides, pattern", [
    ({"name": "mnist"}, r"data.name=mnist is not a dataset kdrun knows.*digits, fashion_mnist, "
                        r"cifar10, cifar100, imagefolder"),
    ({"name": "cifar_10"}, r"did you mean cifar10\?"),
    ({"val_fraction": 0.0}, r"data.val_fraction=0.0 must be within \(0, 1\)"),
    ({"val_fraction": 1.0}, r"data.val_fraction=1.0"),
    ({"val_fraction": -0.1}, r"data.val_fraction=-0.1"),
    ({"image_size": 4}, r"data.image_size=4 must be >= 8"),
    ({"max_train": 5}, r"data.max_train=5 is smaller than the 10 classes of digits"),
    ({"max_val": 0}, r"data.max_val=0 must be >= 1: or null for the whole split"),
    ({"max_test": -3}, r"data.max_test=-3"),
    ({"batch_size": 0}, r"data.batch_size=0 must be >= 1"),
    ({"eval_batch_size": 0}, r"data.eval_batch_size=0"),
    ({"num_workers": -1}, r"data.num_workers=-1"),
])
def test_bad_values_name_their_key(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_data(DataConfig(**overrides), seed=0)


def test_known_names():
    assert DATASETS == ("digits", "fashion_mnist", "cifar10", "cifar100", "imagefolder")


def test_max_train_checked_against_folder_classes(tmp_path, write_image_folder):
    write_image_folder(tmp_path, classes=("a", "b", "c"))
    with pytest.raises(ValueError, match=r"data.max_train=2 is smaller than the 3 classes of imagefolder"):
        build_data(DataConfig(name="imagefolder", root=str(tmp_path), max_train=2), seed=0)
