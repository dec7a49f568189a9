"""The one YAML reader of mtl-hf: safe tags only, with the size and depth of the document bounded.

Every YAML text mtl-hf reads goes through :func:`load_yaml` (or :func:`read_yaml` for a file): run
configs, compare configs, command-line override values, the demo's packaged configs and the
``config.yaml`` a model card quotes. ``yaml.safe_load`` alone refuses Python tags but not two cheap
attacks on memory and the stack:

* **alias bombs**: nine lines of ``&b [*a, *a, ...]`` stand for 9⁹ values. The parsed tree shares the
  repeated parts, so it is small, but anything that walks it (validation, a deep copy, a dump) expands
  it and runs out of memory;
* **deep nesting**: ``[[[[...]]]]`` 5,000 levels deep makes the composer recurse past Python's limit.

Here both are bounded while the document is composed, before any Python object is built: each node's
size counts the values it stands for with aliases expanded (an alias to an anchor counts the anchor's
whole size again), and composing stops at the first node that goes past :data:`MAX_YAML_NODES`
values or :data:`MAX_YAML_DEPTH` levels. The work done is linear in the length of the text, whatever
the aliases expand to. A recursive alias (an anchor used inside itself) is refused too. Every refusal
is an :class:`~mtl_hf.options.OptionsError` naming the file (or the override key) and the line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

from .options import OptionsError

MAX_YAML_NODES = 100_000
"""Most values (keys, items, scalars and collections) a document may hold once aliases are expanded."""

MAX_YAML_DEPTH = 64
"""Most levels of nested collections in a document (a configuration needs fewer than ten)."""


class YamlSyntaxError(OptionsError):
    """The text is not valid YAML (as opposed to valid YAML that is too large or too deep)."""


def read_yaml(path: str | os.PathLike[str], what: str = "YAML file") -> Any:
    """The document in the YAML file ``path``, read with :func:`load_yaml`.

    Raises:
        OptionsError: naming ``path``: it cannot be read (``what`` says what it should have been), is
            not valid YAML, or is too large or too deep.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OptionsError(f"{path}: cannot read the {what} ({reason})") from exc
    return load_yaml(text, str(path))


def load_yaml(
    text: str, where: str, *, max_nodes: int = MAX_YAML_NODES, max_depth: int = MAX_YAML_DEPTH
) -> Any:
    """Parse one YAML document with safe tags only, bounding its expanded size and its nesting.

    Args:
        text: The YAML text.
        where: What to name in errors: the file, or ``"command line: training.seed"``.
        max_nodes: Most values once aliases are expanded.
        max_depth: Most levels of nesting.

    Raises:
        YamlSyntaxError: the text is not valid YAML (an :class:`~mtl_hf.options.OptionsError`).
        OptionsError: the document is larger or deeper than the bounds, or holds a recursive alias.
    """
    try:
        loader = _BoundedLoader(text, where, max_nodes, max_depth)  # checks the characters
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"{where}: not valid YAML: {exc}") from None


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose composer keeps the expanded size of every node and the current depth."""

    def __init__(self, text: str, where: str, max_nodes: int, max_depth: int) -> None:
        super().__init__(text)
        self._where, self._max_nodes, self._max_depth = where, max_nodes, max_depth
        self._sizes: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:  # still being composed
                raise self._refuse(f"the alias *{event.anchor} is used inside its own anchor", event)
            return super().compose_node(parent, index)  # counted by its parent through _sizes
        event = self.peek_event()
        self._depth += 1
        if self._depth > self._max_depth:
            raise self._refuse(f"nested more than {self._max_depth} levels deep", event)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        size = 1
        if isinstance(node, SequenceNode):
            size += sum(self._sizes[id(child)] for child in node.value)
        elif isinstance(node, MappingNode):
            size += sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        if size > self._max_nodes:
            raise self._refuse(
                f"more than {self._max_nodes} values once YAML aliases are expanded (an alias bomb?)", event
            )
        self._sizes[id(node)] = size
        return node

    def _refuse(self, reason: str, event: Any) -> OptionsError:
        line = f" (line {event.start_mark.line + 1})" if event.start_mark is not None else ""
        return OptionsError(f"{self._where}{line}: {reason}; not a configuration")
