"""Read Kubernetes manifests as kubectl does, so offline validation sees the same values, and
refuse what the API server would refuse before it costs memory or time: bytes that are not
UTF-8, a file past MAX_BYTES, duplicate keys, aliases that expand past MAX_NODES or refer to
themselves, nesting deeper than MAX_DEPTH, tagged values that cannot be built."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_BYTES = 10 * 1024 * 1024  # a multi-document file; the API server takes 3 MiB a request
MAX_NODES = 100_000  # values after aliases are expanded; a real job has a few hundred
MAX_DEPTH = 100  # nested mappings and sequences; a Pod template nests about 15 deep


class ManifestError(yaml.YAMLError):
    """A manifest berth will not read; the message names where and why."""


class KubeYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus the float forms kubectl's YAML reader accepts (1.4e10,
    1e9) which YAML 1.1 would leave as strings, and the refusals above."""

    def construct_document(self, node: Node) -> Any:
        _expanded(node, {}, set(), 0)
        return super().construct_document(node)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. `!!int twelve`
            raise ManifestError(f"{_where(node)}: {exc}") from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML's own error says so
                break
            if first is not None:
                raise ManifestError(
                    f"{_where(key_node)}: duplicate key {key!r} (first at {_where(first)})"
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep)


KubeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)$"),
    list("-+.0123456789"),
)


def _where(node: Node) -> str:
    return f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"


def _expanded(node: Node, sizes: dict[int, int], open_: set[int], depth: int) -> int:
    """How many values the node stands for once aliases are expanded (memoised: linear in the
    node graph, however much it would expand)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise ManifestError(f"{_where(node)}: an alias that refers to itself")
    if depth > MAX_DEPTH:
        raise ManifestError(f"{_where(node)}: nested more than {MAX_DEPTH} deep")
    children: list[Node] = []
    if isinstance(node, SequenceNode):
        children = list(node.value)
    elif isinstance(node, MappingNode):
        children = [part for pair in node.value for part in pair]
    open_.add(id(node))
    size = 1 + sum(_expanded(c, sizes, open_, depth + 1) for c in children)
    open_.discard(id(node))
    if size > MAX_NODES:
        raise ManifestError(
            f"{_where(node)}: expands to more than {MAX_NODES:,} values (aliases nested in aliases)"
        )
    sizes[id(node)] = size
    return size


def _check_depth(text: str) -> None:
    """Refuse nesting past MAX_DEPTH from libyaml's event stream, before the pure-Python
    loader sees it: its scanner is quadratic in flow nesting (5,000 `[` took 3 s), libyaml's
    linear. A syntax error is left for the loader to report in its own words."""
    if not yaml.__with_libyaml__:
        return
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
                    raise ManifestError(f"{where}nested more than {MAX_DEPTH} deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except ManifestError:
        raise
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(exc):
            raise ManifestError(f"nested more than {MAX_DEPTH} deep") from None


def load_documents(text: str) -> list[Any]:
    """Every non-empty document of a (multi-document) YAML text; ManifestError (a YAMLError)
    for anything refused."""
    _check_depth(text)
    try:
        return [doc for doc in yaml.load_all(text, Loader=KubeYamlLoader) if doc is not None]
    except ManifestError:
        raise
    except yaml.YAMLError as exc:
        raise ManifestError(f"not valid YAML: {exc}") from None
    except RecursionError:
        raise ManifestError(f"nested more than {MAX_DEPTH} deep") from None


def read_manifest(path: Path) -> list[Any]:
    """load_documents() of a file, refusing one past MAX_BYTES or not UTF-8; a ManifestError
    names the file."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ManifestError(f"{path}: {size:,} bytes: more than {MAX_BYTES:,}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{path}: not UTF-8: byte {exc.start} is {data[exc.start]:#04x}"
        ) from None
    try:
        return load_documents(text)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def read_one(path: Path) -> Any:
    """The one document of a YAML file (a cluster description, energy facts), None when empty;
    read as read_manifest() reads, and a ManifestError when it holds more than one."""
    documents = read_manifest(path)
    if len(documents) > 1:
        raise ManifestError(f"{path}: {len(documents)} YAML documents; expected one")
    return documents[0] if documents else None
