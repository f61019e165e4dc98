# Metadata lives in pyproject.toml; this only ships the top-level conf/ tree
# inside the wheel as the package kdrun.conf (Hydra reads it via pkg://kdrun.conf).
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["kdrun", "kdrun.*"]), "kdrun.conf"],
      package_dir={"kdrun.conf": "conf"})
