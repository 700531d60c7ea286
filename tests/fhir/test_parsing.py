"""Safe parsing of inbound FHIR JSON: every failure is an InboundError with a PHI-free reason."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.fhir.parsing import (
    MAX_DEPTH,
    MAX_RESOURCE_BYTES,
    InboundError,
    nesting_exceeds,
    parse_resource,
    peek_identity,
)

GOOD = b'{"resourceType":"Patient","id":"p-1","name":[{"family":"Sample"}]}'


def reason(raw: bytes, **kw: int) -> str:
    with pytest.raises(InboundError) as info:
        parse_resource(raw, **kw)
    return info.value.reason


def test_good_resource() -> None:
    assert parse_resource(GOOD) == {"resourceType": "Patient", "id": "p-1", "name": [{"family": "Sample"}]}
    assert parse_resource(b"  " + GOOD + b"\r\n")["id"] == "p-1"
    assert parse_resource(b"\xef\xbb\xbf" + GOOD)["id"] == "p-1"  # a BOM is tolerated


def test_brackets_inside_strings_are_not_nesting() -> None:
    raw = json.dumps({"resourceType": "Patient", "id": "p", "x": "[{" * 500, "y": '\\"[[['}).encode()
    assert parse_resource(raw)["x"] == "[{" * 500


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"not json", "invalid JSON"),
        (b'{"resourceType":"Patient","id":"p"', "invalid JSON"),
        (b"\xff\xfe{}", "invalid UTF-8"),
        (b'{"resourceType":"Patient","id":"\xc3\x28"}', "invalid UTF-8"),
        (b"[]", "top level is not an object"),
        (b'"x"', "top level is not an object"),
        (b"42", "top level is not an object"),
        (b'{"id":"p"}', "missing resourceType"),
        (b'{"resourceType":"Patient"}', "missing id"),
        (b'{"resourceType":7,"id":"p"}', "invalid resourceType"),
        (b'{"resourceType":"patient record","id":"p"}', "invalid resourceType"),
        (b'{"resourceType":"Patient","id":"has space"}', "invalid id"),
        (b'{"resourceType":"Patient","id":""}', "invalid id"),
        (b'{"resourceType":"Patient","id":"' + b"x" * 65 + b'"}', "invalid id"),
        (b'{"resourceType":"Patient","id":["p"]}', "invalid id"),
        (b'{"resourceType":"Patient","id":"p","a":NaN}', "NaN or Infinity"),
        (b'{"resourceType":"Patient","id":"p","a":-Infinity}', "NaN or Infinity"),
        (b'{"resourceType":"Patient","id":"p","a":1e999}', "number out of range"),
        (b'{"resourceType":"Patient","id":"p","a":' + b"9" * 31 + b"}", "integer too long"),
        (b'{"resourceType":"Patient","id":"p","a":' + b"9" * 5000 + b"}", "integer too long"),
        (b'{"resourceType":"Patient","id":"p","resourceType":"Patient"}', "duplicate key"),
        (b'{"resourceType":"Patient","id":"p","a":{"b":1,"b":2}}', "duplicate key"),
        (b'{"resourceType":"Patient","id":"p","a":"\\ud800"}', "invalid unicode escape"),
    ],
)
def test_refused(raw: bytes, expected: str) -> None:
    assert reason(raw) == expected


def test_thirty_digit_integers_and_surrogate_pairs_pass() -> None:
    raw = b'{"resourceType":"Patient","id":"p","a":' + b"9" * 30 + b',"s":"\\ud83d\\ude00"}'
    parsed = parse_resource(raw)
    assert parsed["a"] == int("9" * 30) and parsed["s"] == "\U0001f600"


def test_size_limit() -> None:
    big = b'{"resourceType":"Patient","id":"p","x":"' + b"a" * MAX_RESOURCE_BYTES + b'"}'
    assert reason(big) == "resource too large"
    assert reason(GOOD, max_bytes=10) == "resource too large"


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_nesting_bombs_are_refused_before_json_recurses(opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    ok = b'{"resourceType":"Patient","id":"p","x":' + opener * (MAX_DEPTH - 2) + b"1" + closer * (MAX_DEPTH - 2) + b"}"
    assert parse_resource(ok)["id"] == "p"
    for depth in (MAX_DEPTH + 1, 2_000, 200_000):
        bomb = b'{"resourceType":"Patient","id":"p","x":' + opener * depth + b"1" + closer * depth + b"}"
        if len(bomb) <= MAX_RESOURCE_BYTES:
            started = time.perf_counter()
            assert reason(bomb) == "nesting too deep"
            assert time.perf_counter() - started < 1.0
    assert reason(b"[" * 500_000) == "nesting too deep"  # unbalanced, no recursion either


def test_nesting_scan() -> None:
    assert not nesting_exceeds(b"[[[]]]", 3)
    assert nesting_exceeds(b"[[[[]]]]", 3)
    assert not nesting_exceeds(b'["[[[[[[", {"a": "]]]]"}]', 2)
    assert not nesting_exceeds(b'[["\\"[[[["]]', 2)
    assert nesting_exceeds(b"[]" * 100 + b"[[[[" + b"]]]]", 3)


def test_reasons_never_contain_values() -> None:
    canary = "CANARY-Jane-Doe-555-0100"
    samples = [
        b'{"resourceType":"Patient","id":"p","name":"' + canary.encode() + b'","name":"x"}',
        ('{"resourceType":"Patient","id":"' + canary + ' "}').encode(),
        ('{"resourceType":"' + canary + '","id":"p"}').encode(),
        ('{"' + canary + '":NaN}').encode(),
        (canary + "{").encode(),
    ]
    for raw in samples:
        assert canary not in reason(raw)


def test_peek_identity_only_reads_type_and_id() -> None:
    assert peek_identity(b'{"resourceType":"Patient","id":"p-1","name":"x",,}') == ("Patient", "p-1")
    assert peek_identity(b"garbage") == (None, None)
    assert peek_identity(b'{"resourceType":"Patient Name","id":"has space"}') == (None, None)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_inbound_error(raw: bytes) -> None:
    try:
        value = parse_resource(raw)
    except InboundError as exc:
        assert isinstance(exc.reason, str) and exc.reason
    else:
        assert isinstance(value, dict) and isinstance(value["resourceType"], str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["", "Patient", "patient"]), st.text(max_size=70))
def test_arbitrary_json_parses_or_raises_inbound_error(value: object, rtype: str, rid: str) -> None:
    doc = {"resourceType": rtype, "id": rid, "v": value} if rtype else value
    try:
        raw = json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")
    except (ValueError, TypeError):
        return
    try:
        parsed = parse_resource(raw)
    except InboundError:
        return
    assert parsed["resourceType"] == rtype and parsed["id"] == rid
