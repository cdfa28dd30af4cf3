"""Hypothesis strategies shared by the property tests: arbitrary bytes, and near-valid files (a
valid file with random edits, where the interesting bugs are), and arbitrary JSON documents."""
from __future__ import annotations

import json

from hypothesis import settings
from hypothesis import strategies as st

# Few examples each (every reader has several tests) and no per-example deadline: a slow CI box
# must not fail them; the suite stays well under a minute at one thread.
PROPERTY = settings(max_examples=150, deadline=None)
PIECES = ["\t", "\n", "\r\n", "\r", '"', "'", ",", " ", "0", "1", "-", ".", "e", "nan", "inf", "1e308", "1_0",
          "\x00", "\ufeff", "é", "id", "x" * 300]


@st.composite
def edited(draw, valid: bytes) -> bytes:
    """``valid`` after up to 6 random edits (delete, insert a piece, replace a byte, cut)."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["delete", "insert", "byte", "cut"]))
        if op == "delete":
            del data[at:at + draw(st.integers(1, 20))]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(PIECES)).encode("utf-8")
        elif op == "byte" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
    return bytes(data)


def any_bytes(valid: bytes) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, or ``valid`` edited (:func:`edited`)."""
    return st.one_of(st.binary(max_size=400), edited(valid))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
                    max_leaves=12)


@st.composite
def edited_json(draw, valid: dict) -> bytes:
    """``valid`` with one field (at any depth) replaced by arbitrary JSON, or deleted, as bytes."""
    doc = json.loads(json.dumps(valid))
    node = doc
    while isinstance(node, dict) and node:
        key = draw(st.sampled_from(sorted(node)))
        if not isinstance(node[key], dict) or draw(st.booleans()):
            if draw(st.booleans()):
                node[key] = draw(JSON)
            else:
                del node[key]
            break
        node = node[key]
    return json.dumps(doc).encode("utf-8")


def any_json_bytes(valid: dict) -> st.SearchStrategy[bytes]:
    return st.one_of(edited_json(valid), JSON.map(lambda d: json.dumps(d).encode("utf-8")), any_bytes(json.dumps(valid).encode()))


@st.composite
def nested(draw, valid: dict) -> bytes:
    """``valid`` (or one of its fields) wrapped in arrays and objects, up to thousands of levels deep
    (beyond Python's recursion limit), as JSON bytes."""
    depth = draw(st.sampled_from([1, 5, 31, 32, 33, 100, 999, 5000]))
    inner = json.dumps(valid if draw(st.booleans()) else draw(JSON))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}")]))
    text = opener * depth + inner + closer * depth
    if draw(st.booleans()) and valid:   # the nesting under a field of the document
        key = draw(st.sampled_from(sorted(valid)))
        text = json.dumps({**valid, key: "@"}).replace('"@"', text)
    return text.encode("utf-8")


def hostile_json(valid: dict) -> st.SearchStrategy[bytes]:
    """Everything :func:`any_json_bytes` gives, and deep nesting (:func:`nested`)."""
    return st.one_of(any_json_bytes(valid), nested(valid))
