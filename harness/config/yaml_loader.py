"""A strict YAML reader for experiment files and command-line override values.

Plain ``yaml.safe_load`` reads ``1e-3`` as a string (YAML 1.1; here it is a float, as in
YAML 1.2) and lets three things through silently: a key written twice in one
mapping (the last value wins), aliases (``*name``: a few hundred bytes can expand into
gigabytes, and the expansion is what validation walks) and, for files, bytes that are not
UTF-8 (a traceback). This reader refuses each with one line naming the place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from advharness.core.errors import HarnessError


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


class StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` without aliases and without duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(
                f"{_where(event.start_mark)}: YAML aliases (*{event.anchor}) "
                "are not supported (they can expand exponentially); write the "
                "value out, or use a grid"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader reports it
                    continue
                if repeated:
                    raise yaml.YAMLError(
                        f"{_where(key_node.start_mark)}: key {key!r} is given twice in one mapping"
                    )
        return super().construct_mapping(node, deep=deep)


#: YAML 1.2 floats: PyYAML (YAML 1.1) reads ``1e-3`` as a string, which strict numbers refuse.
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def error_text(e: yaml.YAMLError) -> str:
    """A one-line description of a YAML error, with its position."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        return f"{_where(e.problem_mark)}: {e.problem or e.context}"
    return " ".join(str(e).split())


def loads(text: str) -> Any:
    """Parse one YAML document strictly; a :class:`yaml.YAMLError` names the problem."""
    return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader


def load_file(path: Path) -> Any:
    """Read and parse ``path``; a :class:`HarnessError` names the file and the problem."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise HarnessError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise HarnessError(
            f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line}); save the file as UTF-8"
        ) from None
    try:
        return loads(text)
    except yaml.YAMLError as e:
        raise HarnessError(f"{path}: not valid YAML ({error_text(e)})") from None
