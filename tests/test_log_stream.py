"""REDCap's log export read item by item as it arrives (`connection.json_array_items`).

The night after a full sync reads every cell that sync wrote from the log (about 100 MB of JSON
at 10,000 subjects), so the sync reads it as a stream. Whatever the chunking, the items must be
exactly what parsing the whole answer gives, and an answer cut short must never pass for a
shorter log: a lost entry would be a change the sync never pulls.
"""
import json

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.connection import TransientResponse, json_array_items

ENTRY = st.dictionaries(
    st.sampled_from(["timestamp", "username", "action", "details", "record"]),
    st.text(max_size=40) | st.integers() | st.none(), min_size=1)


def chunked(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(body)) for c in cuts} | {0, len(body)})
    return [body[a:b] for a, b in zip(points, points[1:])]


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(ENTRY, max_size=12), cuts=st.lists(st.integers(0, 2000), max_size=30),
       ascii_only=st.booleans(), spaced=st.booleans())
def test_any_log_in_any_chunks_reads_exactly_as_parsing_it_whole(entries, cuts, ascii_only,
                                                                  spaced):
    body = json.dumps(entries, ensure_ascii=ascii_only,
                      separators=(", ", ": ") if spaced else (",", ":")).encode("utf-8")
    assert list(json_array_items(chunked(body, cuts))) == json.loads(body)


def test_a_multibyte_character_split_between_chunks_is_read_whole():
    body = json.dumps([{"details": "dose = '5 µg', note = 'ça'"}], ensure_ascii=False).encode()
    at = body.index("µ".encode()) + 1
    assert list(json_array_items([body[:at], body[at:]])) == json.loads(body)


def test_an_item_longer_than_many_chunks_is_read_whole():
    body = json.dumps([{"details": "x" * 300_000}, {"record": "2"}]).encode()
    assert list(json_array_items(body[i:i + 100] for i in range(0, len(body), 100))) == \
        json.loads(body)


def test_a_log_cut_short_anywhere_is_an_answer_to_ask_again_never_a_shorter_log():
    body = json.dumps([{"record": "1", "details": "a = '1'"}, {"record": "2"}]).encode()
    for end in range(len(body)):
        with pytest.raises(TransientResponse, match="not a JSON array"):
            list(json_array_items([body[:end]]))


@pytest.mark.parametrize("body, problem", [
    (b"<html><body>Please log in</body></html>", "starts '<html>"),
    (b"", "empty"),
    (b"[1, 2]", "not an object"),
    (b'[{"record": "1"} {"record": "2"}]', "where a comma was due"),
    (b'[{"record": "1"}] trailing', "text after the array"),
    (b'{"records": []}', "starts"),
])
def test_a_body_that_is_not_a_log_is_named_and_asked_again(body, problem):
    with pytest.raises(TransientResponse, match=problem):
        list(json_array_items([body]))


def test_redcaps_own_error_is_raised_as_its_refusal_in_its_words():
    with pytest.raises(requests.RequestException, match="You do not have Logging privileges"):
        list(json_array_items([b'{"error": "You do not have Logging privileges"}']))


def test_an_empty_log_has_no_entries():
    assert list(json_array_items([b" [ ", b"] "])) == []
