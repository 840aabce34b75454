"""Property-based: malformed experiments get located one-line messages, never a traceback.

Start from a valid experiment (with grids), apply random mutations (wrong types, negative or
NaN numbers, unknown keys and names, empty lists, bad grid values, bad overrides) and check
that ``parse_experiment`` either succeeds or raises a ``HarnessError`` whose every line reads
``<source>: <location>: <message>``. Deterministic (``derandomize``), about 10 s.
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advharness.config.experiment import Experiment, parse_experiment
from advharness.core.errors import HarnessError

SOURCE = "fuzz.yaml"
VALID: dict[str, Any] = {
    "name": "fuzz",
    "seed": 0,
    "data": {"dataset": "digits", "split": "test", "n_samples": 8},
    "models": [
        {"recipe": "digits_mlp", "framework": "torch"},
        {"recipe": "digits_cnn", "framework": ["torch", "tensorflow"]},
        {
            "recipe": "digits_mlp",
            "framework": "tensorflow",
            "queries": 100,
            "substitute_of": "digits_mlp-torch",
        },
        {
            "factory": "collections:OrderedDict",
            "framework": "torch",
            "name": "fac",
            "input_shape": [64],
            "nb_classes": 10,
            "bounds": [0, 1],
            "layout": "flat",
        },
    ],
    "libraries": ["art", "foolbox"],
    "attacks": [
        {"attack": "pgd", "eps": [0.1, 0.2], "steps": 10, "norm": ["linf", "l2"]},
        {"attack": "cw", "steps": 20, "params": {"c": [0.1, 1.0], "confidence": 0.0}},
        {"attack": "fgsm", "eps": 0.1, "source": "digits_mlp-torch"},
        {"attack": "square", "eps": 0.1, "budget": [100, 200], "query_levels": [10, 100]},
    ],
    "batch_size": 64,
}
NAMES = [
    "pgd",
    "nope",
    "art",
    "advertorch",
    "digits_mlp",
    "resnet",
    "torch",
    "jax",
    "linf",
    "l0",
    "random",
    "score-based",
    "telepathy",
    "digits_mlp-torch",
    "",
    "x" * 40,
    "fac",
    "os:nothing",
    "os:sep",
    "advh_no_such_module:make",
    "not-an-import-path",
    "NHWC",
    "/nonexistent/weights.pt",
    "probabilities",
]
FIELDS = [
    "weights",
    "factory",
    "recipe",
    "seeds",
    "seed",
    "time_limit_s",
    "workers",
    "params",
    "eps",
    "steps",
    "step_size",
    "norm",
    "framework",
    "name",
    "substitute_of",
    "queries",
    "bounds",
    "layout",
    "input_shape",
    "nb_classes",
    "source",
    "target_models",
    "budget",
]
KEYS = st.one_of(st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True), st.sampled_from(FIELDS))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-1, -0.5, 0, 1e308 * 10]),
    st.text(max_size=6),
    st.sampled_from(NAMES),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.builds(list),
    st.dictionaries(KEYS, SCALARS, max_size=2),
    st.builds(dict),
)
OVERRIDE_PATHS = [
    "seed",
    "seeds",
    "name",
    "data.n_samples",
    "data",
    "attacks.pgd.steps",
    "attacks.zzz.steps",
    "attacks[1].eps",
    "attacks[9].eps",
    "attacks.cw.params.c",
    "models[0].framework",
    "models.framework",
    "libraries",
    "time_limit_s",
    "workers",
    "a..b",
    "name.x",
    "attacks.pgd",
    "",
]
OVERRIDE_VALUES = [
    "3",
    "-1",
    ".nan",
    "[0, 1]",
    "[]",
    "{}",
    "[0,",
    "art",
    "null",
    "1e400",
    "[0.1, -1]",
    "'x: y'",
]
OVERRIDES = st.one_of(
    st.builds(lambda p, v: f"{p}={v}", st.sampled_from(OVERRIDE_PATHS), st.sampled_from(OVERRIDE_VALUES)),
    st.text(alphabet="abcxyz.[]=019 ", max_size=12),
)

QUOTED = r"('[^']*'|\"[^\"]*\")"
LOCATION = (
    rf"(<experiment>|override {QUOTED}"
    rf"|([A-Za-z0-9_-]+|\[{QUOTED}\])(\.[A-Za-z0-9_-]+|\[\d+\]|\[{QUOTED}\])*)"
)
LINE = re.compile(rf"^{re.escape(SOURCE)}: {LOCATION}: \S.*$")


def _nodes(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``obj`` (mappings by key, lists by index), the root included."""
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _nodes(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _nodes(v, (*path, i))
    return out


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_nodes(doc)))
        node = _get(doc, path)
        op = draw(st.sampled_from(["set", "set", "delete", "add_key", "empty", "append"]))
        if op == "set" and path:
            _get(doc, path[:-1])[path[-1]] = draw(VALUES)
        elif op == "delete" and path:
            del _get(doc, path[:-1])[path[-1]]
        elif op == "add_key" and isinstance(node, dict):
            node[draw(KEYS)] = draw(VALUES)
        elif op == "empty" and isinstance(node, list | dict):
            node.clear()
        elif op == "append" and isinstance(node, list):
            node.append(
                draw(
                    st.one_of(
                        VALUES,
                        st.fixed_dictionaries(
                            {"attack": st.sampled_from(NAMES), "eps": st.lists(SCALARS, max_size=2)}
                        ),
                    )
                )
            )
    overrides = draw(st.lists(OVERRIDES, max_size=2)) if draw(st.booleans()) else []
    return doc, overrides


def _check(doc: dict[str, Any], overrides: list[str]) -> None:
    before = copy.deepcopy(doc)
    try:
        exp = parse_experiment(doc, SOURCE, overrides)
    except HarnessError as e:
        lines = str(e).split("\n")
        assert lines and all(LINE.match(line) for line in lines), str(e)
        assert len(set(lines)) == len(lines), str(e)  # each problem once
    else:
        assert isinstance(exp, Experiment) and exp.attacks and exp.models
        assert Experiment.model_validate_json(exp.model_dump_json()) == exp  # as workers get it
    assert repr(doc) == repr(before)  # the caller's mapping is never changed


@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_malformed_experiments_get_located_messages(case: tuple[dict[str, Any], list[str]]) -> None:
    _check(*case)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(OVERRIDES, min_size=1, max_size=4))
def test_overrides_alone_never_raise_anything_else(overrides: list[str]) -> None:
    _check(copy.deepcopy(VALID), overrides)


#: The documented expansion order of the grid fields (params follow, in the order given).
ORDER = (
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
)


def _unique(elements: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[list[Any]]:
    return st.lists(elements, min_size=1, max_size=max_size, unique=True)


@st.composite
def valid_grids(draw: st.DrawFn) -> tuple[dict[str, Any], list[list[tuple[Any, ...]]], int]:
    """A valid experiment with grids, each entry's expected expansion, and the model count."""
    pgd: dict[str, Any] = {
        "attack": "pgd",
        "norm": draw(_unique(st.sampled_from(["linf", "l2"]))),
        "eps": draw(_unique(st.floats(0, 1, allow_nan=False), 4)),
        "steps": draw(_unique(st.integers(1, 100))),
        "random_start": draw(_unique(st.booleans())),
        "targeted": draw(_unique(st.booleans())),
    }
    cw: dict[str, Any] = {
        "attack": "cw",
        "steps": draw(_unique(st.integers(1, 100))),
        "params": {
            "c": draw(_unique(st.floats(0.01, 100, allow_nan=False))),
            "confidence": draw(_unique(st.floats(0, 10, allow_nan=False))),
        },
    }
    square: dict[str, Any] = {
        "attack": "square",
        "eps": 0.1,
        "threat_model": draw(_unique(st.sampled_from(["score-based", "decision-based"]))),
        "budget": draw(_unique(st.integers(1, 10**6))),
    }
    entries = draw(st.permutations([pgd, cw, square]))[: draw(st.integers(1, 3))]
    expected = []
    for e in entries:
        axes = [e[f] for f in ORDER if isinstance(e.get(f), list)]
        axes += list(e.get("params", {}).values())
        expected.append(list(itertools.product(*axes)))
    frameworks = draw(_unique(st.sampled_from(["torch", "tensorflow"])))
    doc = {
        "name": "grid",
        "models": [{"recipe": "digits_mlp", "framework": frameworks}],
        "attacks": entries,
        "seeds": draw(_unique(st.integers(0, 2**31), 3)),
    }
    return doc, expected, len(frameworks)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(valid_grids())
def test_valid_grids_parse_to_the_product(
    case: tuple[dict[str, Any], list[list[tuple[Any, ...]]], int],
) -> None:
    doc, expected, n_models = case
    exp = parse_experiment(doc, SOURCE)
    assert Experiment.model_validate_json(exp.model_dump_json()) == exp
    sizes = [len(e) for e in expected]
    assert len(exp.attacks) == sum(sizes)
    assert len(exp.models) == n_models
    assert exp.grid_size() == n_models * sum(sizes) * len(exp.libraries) * len(doc["seeds"])
    got, start = [], 0
    for entry, size in zip(doc["attacks"], sizes, strict=True):
        for a in exp.attacks[start : start + size]:
            assert a.attack == entry["attack"]
            fields = [getattr(a, f) for f in ORDER if isinstance(entry.get(f), list)]
            got.append((*fields, *(a.params[k] for k in entry.get("params", {}))))
        start += size
    assert got == [t for e in expected for t in e]
