"""Grids and command-line overrides on the raw experiment mapping (before validation).

In an entry of ``attacks``, each field of :data:`GRID_FIELDS` and each value inside
``params`` may be a list: one spec per value, the cartesian product across the listed
fields (in :data:`GRID_FIELDS` order, then ``params`` order; values in the order given).
In an entry of ``models``, ``framework`` may be a list: one model per framework.

Overrides are ``path=value`` strings (value parsed as YAML): ``data.n_samples=32``,
``attacks[2].eps=0.3``, ``attacks.pgd.steps=100`` (every ``pgd`` entry), ``seeds=[0,1]``.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from advharness.config.fields import scalar
from advharness.config.yaml_loader import error_text, loads
from advharness.core.errors import HarnessError

#: Attack-entry fields that may be written as a list (a grid), in expansion order.
GRID_FIELDS: tuple[str, ...] = (
    "norm",
    "eps",
    "steps",
    "step_size",
    "random_start",
    "restarts",
    "targeted",
    "target_mode",
    "threat_model",
    "budget",
    "query_mode",
)
#: At most this many specs from the attack entries together, whatever ``max_cells`` says.
MAX_GRID_SPECS = 100_000
#: The default plan cap (``max_cells``): models x attack specs x libraries x seeds.
DEFAULT_MAX_CELLS = 10_000

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]
_MISSING = object()


@dataclass(frozen=True)
class Origin:
    """Where an expanded entry came from: its index in the file and the grid values picked."""

    index: int
    grid: tuple[tuple[Loc, Any], ...] = ()  # (path inside the entry, value) per listed field


@dataclass
class Expansion:
    """The mapping with ``attacks`` and ``models`` flattened, and where each entry came from."""

    data: dict[str, Any]
    origins: dict[str, list[Origin]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: Lists that lost entries to ``problems`` (their other checks may then be spurious).
    dropped: set[str] = field(default_factory=set)


# -- grids ---------------------------------------------------------------------------------
def _value_problem(path: Loc, x: Any) -> str | None:
    """What the spec alone would let through (non-finite numbers), or report once per
    union member (a params value that is not a number, string or boolean)."""
    x = scalar(x)
    if path[0] == "params" and not isinstance(x, bool | int | float | str):
        return "must be a number, string or boolean"
    if isinstance(x, float) and not math.isfinite(x):
        return "must be a finite number"
    return None


def _attack_axes(entry: dict[Any, Any], i: int) -> tuple[list[tuple[Loc, list[Any]]], list[Problem]]:
    """The listed fields of an attack entry (in expansion order), and its grid problems."""
    axes: list[tuple[Loc, list[Any]]] = [
        ((f,), entry[f]) for f in GRID_FIELDS if isinstance(entry.get(f), list)
    ]
    checked: list[tuple[Loc, Any]] = [(("step_size",), entry.get("step_size"))]
    params = entry.get("params")
    if isinstance(params, dict):
        axes += [(("params", k), v) for k, v in params.items() if isinstance(v, list)]
        checked += [(("params", k), v) for k, v in params.items()]
    problems: list[Problem] = []
    for path, v in checked:
        found = [
            (msg, x)
            for x in (v if isinstance(v, list) else [v])
            if (msg := _value_problem(path, x)) is not None
        ]
        if found:
            msg, x = found[0]
            problems.append(
                (("attacks", i, *path), msg + (f" (grid value {x!r})" if isinstance(v, list) else ""))
            )
    problems += [(("attacks", i, *path), "an empty grid") for path, vals in axes if not vals]
    size = grid_size(axes)
    if size > MAX_GRID_SPECS:
        problems.append((("attacks", i), f"the grid has {size:,} specs; at most {MAX_GRID_SPECS:,} in all"))
    return axes, problems


def grid_size(axes: Sequence[tuple[Loc, list[Any]]]) -> int:
    """How many specs an entry with these listed fields expands to."""
    return math.prod(len(vals) for _, vals in axes)


def _too_many_specs(entries: Sequence[Any], max_cells: int) -> Problem | None:
    """The attack entries together would expand past ``max_cells`` (each spec is at least
    one cell) or :data:`MAX_GRID_SPECS`, counted before any is built (each entry's own grid
    problems aside): a problem naming the largest entries."""
    sizes = {
        i: grid_size(axes)
        for i, e in enumerate(entries)
        if isinstance(e, dict)
        for axes, problems in [_attack_axes(e, i)]
        if not problems
    }
    total = sum(sizes.values()) + sum(not isinstance(e, dict) for e in entries)
    if total <= min(max_cells, MAX_GRID_SPECS):
        return None
    top = sorted(sizes, key=lambda i: -sizes[i])[:3]
    largest = ", ".join(f"attacks[{i}]: {sizes[i]:,}" for i in top)
    if total > MAX_GRID_SPECS:
        limit = f"at most {MAX_GRID_SPECS:,} in all"
    else:
        limit = (
            f"more than max_cells = {max_cells:,} (each is at least one cell); shrink "
            "the grids, or raise max_cells (in the file, or max_cells=N on the command "
            "line)"
        )
    return (("attacks",), f"the attack grids expand to {total:,} specs (largest {largest}), {limit}")


def expand_attack(
    entry: dict[Any, Any], i: int = 0
) -> tuple[list[tuple[dict[Any, Any], Origin]], list[Problem]]:
    """One entry of ``attacks`` as concrete entries (no lists left), or its grid problems."""
    axes, problems = _attack_axes(entry, i)
    if problems:
        return [], problems
    out = []
    for values in itertools.product(*(vals for _, vals in axes)):
        concrete = dict(entry)
        if isinstance(entry.get("params"), dict):
            concrete["params"] = dict(entry["params"])
        for (path, _), v in zip(axes, values, strict=True):
            if path[0] == "params":
                concrete["params"][path[1]] = v
            else:
                concrete[path[0]] = v
        out.append((concrete, Origin(i, tuple((p, v) for (p, _), v in zip(axes, values, strict=True)))))
    return out, []


def expand_model(
    entry: dict[Any, Any], i: int = 0
) -> tuple[list[tuple[dict[Any, Any], Origin]], list[Problem]]:
    """One entry of ``models`` as one entry per framework, or its grid problems."""
    frameworks = entry.get("framework")
    if not isinstance(frameworks, list):
        return [(entry, Origin(i))], []
    problems: list[Problem] = []
    if not frameworks:
        problems.append((("models", i, "framework"), "an empty grid"))
    if entry.get("name") is not None:
        problems.append(
            (
                ("models", i, "name"),
                "one name cannot name one model per framework: "
                "drop name (keys are <recipe>-<framework>) or list one framework",
            )
        )
    if problems:
        return [], problems
    unique: list[Any] = []
    for fw in frameworks:
        if fw not in unique:
            unique.append(fw)
    return [({**entry, "framework": fw}, Origin(i, ((("framework",), fw),))) for fw in unique], []


def _max_cells(raw: dict[str, Any]) -> int:
    """The file's ``max_cells`` if it is a valid one (else the validator reports it)."""
    v = raw.get("max_cells", DEFAULT_MAX_CELLS)
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= 1
    return v if ok else DEFAULT_MAX_CELLS


def expand_experiment(raw: dict[str, Any]) -> Expansion:
    """``raw`` with every grid expanded; entries with grid problems are left out."""
    out = Expansion(data=dict(raw))
    for name, expand in (("attacks", expand_attack), ("models", expand_model)):
        entries = raw.get(name)
        if not isinstance(entries, list):
            continue  # the validator reports the wrong type
        flat: list[Any] = []
        origins: list[Origin] = []
        too_many = _too_many_specs(entries, _max_cells(raw)) if name == "attacks" else None
        if too_many is not None:  # nothing is built
            out.problems.append(too_many)
            out.dropped.add(name)
            entries = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                flat.append(entry)
                origins.append(Origin(i))
                continue
            expanded, problems = expand(entry, i)
            if problems:
                out.problems += problems
                out.dropped.add(name)
            for concrete, origin in expanded:
                flat.append(concrete)
                origins.append(origin)
        out.data[name] = flat
        out.origins[name] = origins
    return out


def locate(problems: Iterable[Problem], expansion: Expansion) -> list[Problem]:
    """Map problems found on expanded entries back to their entries in the file.

    A problem inside a listed field names its grid value (``attacks[3].eps: must be >= 0
    (grid value -1.0)``); any other problem of a grid entry that only some of its specs
    have names the grid values those specs share. Repeats are reported once.
    """
    groups: dict[tuple[Any, ...], list[int]] = {}
    suffix_of: dict[tuple[Any, ...], str | None] = {}
    for loc, msg in problems:
        origins = expansion.origins.get(str(loc[0])) if loc else None
        if not origins or len(loc) < 2 or not isinstance(loc[1], int) or loc[1] >= len(origins):
            key: tuple[Any, ...] = (loc, msg, None)
            groups.setdefault(key, [])
            suffix_of[key] = ""
            continue
        o = origins[loc[1]]
        rest = loc[2:]
        own = next((v for path, v in o.grid if rest[: len(path)] == path), _MISSING)
        key = ((loc[0], o.index, *rest), msg, None if own is _MISSING else repr(own))
        groups.setdefault(key, []).append(loc[1])
        suffix_of[key] = None if own is _MISSING else f" (grid value {own!r})"
    entries: dict[tuple[str, int], list[int]] = {}  # (list, entry index) -> its flat indices
    for name, origins in expansion.origins.items():
        for k, o in enumerate(origins):
            entries.setdefault((name, o.index), []).append(k)
    out: list[Problem] = []
    for key, flat in groups.items():
        loc, msg, _ = key
        suffix = suffix_of[key]
        if suffix is None:
            name = str(loc[0])
            suffix = _shared_values(expansion.origins[name], entries[(name, int(loc[1]))], set(flat))
        out.append((loc, msg + suffix))
    return out


def _shared_values(origins: Sequence[Origin], entry: list[int], failing: set[int]) -> str:
    """`` (grid values a=1, b=2)``: the grid values all ``failing`` specs of an entry (flat
    indices ``entry``) share, among the fields that vary; empty if all of them fail."""
    if failing >= set(entry):
        return ""
    shared = []
    for n, (path, _) in enumerate(origins[entry[0]].grid):
        seen = {repr(origins[k].grid[n][1]) for k in entry}
        picked = {repr(origins[k].grid[n][1]) for k in failing}
        if len(seen) > 1 and len(picked) == 1:
            shared.append(f"{'.'.join(map(str, path))}={picked.pop()}")
    if not shared:
        return ""
    return f" (grid value{'s' if len(shared) > 1 else ''} {', '.join(shared)})"


# -- overrides -----------------------------------------------------------------------------
class _OverrideError(Exception):
    pass


_SEGMENT = re.compile(r"^([^.\[\]]+)((?:\[\d+\])*)$")


def _parse_path(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    for seg in path.split("."):
        m = _SEGMENT.match(seg.strip())
        if not m:
            raise _OverrideError(f"bad path segment {seg!r} (expected key or key[index])")
        tokens.append(m.group(1))
        tokens += [int(n) for n in re.findall(r"\[(\d+)\]", m.group(2))]
    return tokens


def _where(tokens: Sequence[str | int]) -> str:
    out = ""
    for t in tokens:
        out += f"[{t}]" if isinstance(t, int) else (f".{t}" if out else t)
    return out


def _step(node: Any, token: str | int, done: Sequence[str | int], create: bool) -> Any:
    where = _where(done) or "the experiment"
    if isinstance(token, int):
        if not isinstance(node, list):
            raise _OverrideError(f"{where} is not a list")
        if token >= len(node):
            raise _OverrideError(
                f"index {token} out of range ({where} has {len(node)} entr{'y' if len(node) == 1 else 'ies'})"
            )
        return node[token]
    if isinstance(node, list):
        raise _OverrideError(f"{where} is a list: index it, e.g. {where}[0].{token}")
    if not isinstance(node, dict):
        raise _OverrideError(f"{where} is not a mapping")
    if create and node.get(token) is None:
        node[token] = {}
    return node.get(token)


def _targets(root: dict[str, Any], tokens: list[str | int]) -> list[tuple[Any, list[str | int]]]:
    """The containers the last token is set in (with the path walked to each)."""
    if len(tokens) >= 2 and tokens[0] == "attacks" and isinstance(tokens[1], str):
        attacks = root.get("attacks")
        if not isinstance(attacks, list):
            raise _OverrideError("attacks is not a list")
        picked = [
            ([*tokens[:1], i], a)
            for i, a in enumerate(attacks)
            if isinstance(a, dict) and a.get("attack") == tokens[1]
        ]
        if not picked:
            raise _OverrideError(f"no attack {tokens[1]!r} in the experiment")
        if len(tokens) == 2:
            raise _OverrideError(f"name a field of the attack, e.g. attacks.{tokens[1]}.steps")
        starts = [(a, done) for done, a in picked]
        rest = tokens[2:]
    else:
        starts, rest = [(root, [])], tokens
    out = []
    for node, done in starts:
        for token in rest[:-1]:
            node = _step(node, token, done, create=True)
            done = [*done, token]
        out.append((node, done))
    return out


def _apply(root: dict[str, Any], override: str) -> None:
    path, eq, text = override.partition("=")
    if not eq or not path.strip():
        raise _OverrideError("expected path=value")
    try:
        value = loads(text)
    except yaml.YAMLError as e:
        raise _OverrideError(f"value is not valid YAML ({error_text(e)})") from None
    tokens = _parse_path(path.strip())
    targets = _targets(root, tokens)  # all resolved before anything is set
    last = tokens[-1]
    for node, done in targets:
        _step(node, last, done, create=False)  # type and range checks
    for node, _ in targets:
        node[last] = copy.deepcopy(value)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A new mapping: ``raw`` with each ``path=value`` override applied, in order.

    Raises :class:`HarnessError` with one line per bad override, each naming it.
    """
    out = copy.deepcopy(raw)
    lines = []
    for o in overrides:
        try:
            _apply(out, o)
        except _OverrideError as e:
            lines.append(f"override {o!r}: {e}")
    if lines:
        raise HarnessError("\n".join(dict.fromkeys(lines)))  # a repeated override once
    return out
