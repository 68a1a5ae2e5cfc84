"""Field typing from the dictionary (§1.5) and which export row a reference reads (§1.4)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.logic import ast
from sync.logic.fields import FrameLayout, field_catalogue, missing_codes, redcap_isnumber
from tests.logic.conftest import TYPED_FIELDS, metadata_frame


def test_numeric_typing_follows_addchknull():
    catalogue = field_catalogue(metadata_frame(TYPED_FIELDS))
    numeric = sorted(name for name, info in catalogue.items() if info.numeric)
    assert numeric == ["calc1", "cb", "conf_complete", "int", "ncomma", "num", "num2", "rad",
                       "sl", "yn"]


def test_a_non_numeric_missing_code_makes_choice_fields_text():
    catalogue = field_catalogue(metadata_frame(TYPED_FIELDS), ("UNK", "NA"))
    assert [name for name in ("rad", "cb", "yn", "num") if catalogue[name].numeric] == ["yn", "num"]


def test_numeric_missing_codes_keep_choice_fields_numeric():
    catalogue = field_catalogue(metadata_frame(TYPED_FIELDS), ("-99",))
    assert catalogue["rad"].numeric and not catalogue["rad0"].numeric


def test_missing_codes_read_every_spelling_of_the_setting():
    assert missing_codes("UNK, Unknown | NA, Not applicable") == ("UNK", "NA")
    assert missing_codes("UNK, Unknown\nNA, Not applicable") == ("UNK", "NA")
    assert missing_codes("UNK,NA") == ("UNK", "NA")
    assert missing_codes(["UNK", "NA"]) == ("UNK", "NA")
    assert missing_codes("") == ()


def test_redcap_isnumber_rejects_leading_zeros():
    assert [redcap_isnumber(t) for t in ("0", "0.5", ".5", "-1", "1e3", "01", "-01", "00.5", "")] == [
        True, True, True, True, True, False, False, False, False]


FORMS = metadata_frame([{"field_name": "record_id", "field_type": "text"},
                        {"field_name": "hb", "field_type": "text", "form_name": "labs"},
                        {"field_name": "ae_term", "field_type": "text", "form_name": "ae"}])
EVENTS = ["screening_arm_1", "day1_arm_1", "day7_arm_1"]
REPEATING_EVENT = "day7_arm_1"
"""Rows of day7 without a repeating instrument repeat as a whole (a repeating event)."""

keys = st.lists(st.tuples(st.sampled_from(["1", "2"]), st.sampled_from(EVENTS),
                          st.sampled_from(["", "ae"]), st.sampled_from(["", "1", "2", "3"])),
                min_size=1, max_size=10, unique=True)
refs = st.builds(ast.FieldRef, st.sampled_from(["hb", "ae_term"]),
                 event=st.sampled_from([None, "event-name", "day1_arm_1", "previous-event-name"]),
                 instance=st.sampled_from([None, "1", "previous-instance", "last-instance"]))


@given(keys, refs)
@settings(deadline=None)
def test_the_own_row_shortcut_reads_what_the_general_lookup_reads(rows, ref):
    frame = pd.DataFrame(
        [{"record_id": r, "redcap_event_name": e,
          "redcap_repeat_instrument": "" if e == REPEATING_EVENT else form,
          "redcap_repeat_instance": (i or "1") if form or e == REPEATING_EVENT else "",
          "hb": f"hb{n}",
          "ae_term": f"ae{n}"}
         for n, (r, e, form, i) in enumerate(rows)], dtype=object)
    frame = frame.drop_duplicates(subset=["record_id", "redcap_event_name",
                                          "redcap_repeat_instrument", "redcap_repeat_instance"])
    layout = FrameLayout(frame, "record_id", EVENTS)
    info = field_catalogue(FORMS)[ref.field]
    fast = layout.raw(ref, info, ref.field)
    general = FrameLayout(frame, "record_id", EVENTS)
    general._own_rows = lambda *_: np.zeros(len(frame), dtype=bool)  # force the general lookup
    assert fast.tolist() == general.raw(ref, info, ref.field).tolist()
