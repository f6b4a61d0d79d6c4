"""The CustomResourceDefinitions, shipped in the package: offline validation reads this file."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any, cast

import yaml

GROUP = "berth.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AcceleratorJob"


@cache
def acceleratorjob_crd() -> dict[str, Any]:
    text = files(__name__).joinpath("acceleratorjob.yaml").read_text(encoding="utf-8")
    return cast(dict[str, Any], yaml.safe_load(text))


def acceleratorjob_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the served version."""
    for version in acceleratorjob_crd()["spec"]["versions"]:
        if version["name"] == VERSION:
            return cast(dict[str, Any], version["schema"]["openAPIV3Schema"])
    raise LookupError(f"CRD has no version {VERSION}")
