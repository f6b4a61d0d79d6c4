"""Read Kubernetes manifests as kubectl does, so offline validation sees the same values."""

from __future__ import annotations

import re
from typing import Any

import yaml


class KubeYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus the float forms kubectl's YAML reader accepts (1.4e10,
    1e9) which YAML 1.1 would leave as strings."""


KubeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)$"),
    list("-+.0123456789"),
)


def load_documents(text: str) -> list[Any]:
    """Every non-empty document of a (multi-document) YAML text."""
    return [doc for doc in yaml.load_all(text, Loader=KubeYamlLoader) if doc is not None]
