"""A cut streamed batch by batch of whole subjects is the cut of everything at once (#17.2).

Small batches split the demo trial so that columns only some subjects need (a missing-data
code), listings grouped by field and SDTM subjects ordered by USUBJID cross batch boundaries;
every file, the manifest included, must come out byte for byte the same.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_export import SALT, cut_into, load_dictionary, ROOT, synced_records

VARIANTS = {"blinded": {}, "deidentified": {"deidentify": True, "secret_salt": SALT},
            "unblinded": {"unblinded": True}}


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


@pytest.fixture(scope="module")
def demo():
    return synced_records(), load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_cut_in_small_batches_is_byte_identical_to_one_batch(tmp_path, demo, variant):
    records, dictionary = demo
    whole = cut_into(tmp_path / "whole", records, dictionary, batch_size=10_000,
                     **VARIANTS[variant])
    batched = cut_into(tmp_path / "batched", records, dictionary, batch_size=9,
                       **VARIANTS[variant])
    assert batched == whole
    one, many = files(tmp_path / "whole"), files(tmp_path / "batched")
    assert sorted(many) == sorted(one)
    assert [name for name in one if many[name] != one[name]] == []
    assert not any(name.startswith(".") or "/." in name for name in many)


def test_each_batch_holds_whole_subjects_in_the_cuts_order(demo, tmp_path):
    """The batches a cut reads: whole subjects, in natural record order, none left out."""
    from sync.export.records import batches, natural_order
    records, _ = demo
    ids = list(dict.fromkeys(records["record_id"]))
    groups = batches(natural_order(ids[::-1]), 9, str)
    assert [r for group in groups for r in group] == natural_order(ids)
    assert all(len(group) == 9 for group in groups[:-1]) and len(groups) > 3


def test_sdtm_domains_are_built_while_redcap_still_exports_the_later_batches(tmp_path, demo):
    """The SDTM pass takes each batch of subjects as soon as the first pass has them, so its
    work overlaps REDCap's export of the next batch instead of following the whole export."""
    from dataclasses import replace

    from sync.export.records import natural_order, records_in_frame
    records, dictionary = demo
    out = tmp_path / "cut"
    sdtm_spool = tmp_path / ".cut.partial" / ".spool" / "sdtm"
    built_when_asked: list[int] = []

    def pull_groups(groups):
        for group in groups:
            built_when_asked.append(len(list(sdtm_spool.glob("*"))) if sdtm_spool.exists()
                                    else 0)
            yield records[records["record_id"].isin(group)].reset_index(drop=True)

    source = replace(records_in_frame(records, "record_id"), pull_groups=pull_groups,
                     record_ids=natural_order(list(dict.fromkeys(records["record_id"]))))
    assert cut_into(out, source, dictionary, batch_size=9) == cut_into(
        tmp_path / "whole", records, dictionary, batch_size=10_000)
    assert len(built_when_asked) > 3
    assert built_when_asked[0] == 0 and built_when_asked[-1] > 0
