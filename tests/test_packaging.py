"""The package metadata reads without a warning: `make install` prints no deprecation notice."""

import warnings
from pathlib import Path

from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent.parent


def test_the_project_metadata_applies_without_any_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distribution = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert distribution.metadata.name == "rankwise"
    assert distribution.metadata.license_expression == "Apache-2.0"
