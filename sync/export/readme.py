"""The README every cut carries: what each folder holds, how to read it, what it leaves out."""
from __future__ import annotations

from sync.export.manifest import Manifest

CORE_COMMAND = "python core.py validate -s sdtmig -v 3-4 -d sdtm -ft xpt -o core-report -of json"


def cut_readme(manifest: Manifest, tag: str, sdtm: bool) -> str:
    """Markdown text naming each folder and file kind of the cut."""
    blinded = manifest.blinding.get("status") != "UNBLINDED"
    blinding = ("blinded: allocation-revealing fields (@UNBLINDED) and all derived from them are "
                "left out" if blinded else "**UNBLINDED**: allocation is in this cut")
    deidentified = ("yes: pseudonyms, dates shifted per subject, free text dropped (kept "
                    "where the CRF marks it @DEID-SAFE: AE and medication terms)"
                    if manifest.deidentified else "no")
    lines = [
        f"# Data cut of {manifest.source.get('project_title') or 'the trial'}", "",
        f"- Cut time: {manifest.cut_time or 'withheld (de-identified cut)'}",
        f"- Blinding: {blinding}", f"- De-identified: {deidentified}",
        f"- Subjects: {manifest.records}", "",
        "## What each folder holds", "",
        f"- `tables/<instrument>{tag}.csv|.parquet`: one row per record, event and repeat instance "
        "with data, typed from the data dictionary; coded fields with `<field>_label`, checkboxes "
        "with `<field>___<code>_state`, missing-data codes in `<field>_missing_code`, and "
        "`open_queries`/`data_status` per row.",
        f"- `codebook{tag}.csv|.parquet`: every column of every table: form, label, type, unit, "
        "choices, how it was derived.",
        f"- `status/subjects{tag}`: eligibility, failing criteria, doses, query counts per subject; "
        f"`status/queries{tag}`: every query with its state and lifecycle; `status/problems{tag}`: "
        "values left blank because they are not of their field's type; "
        f"`status/uncoded_terms{tag}`: AE and medication terms without a dictionary code (no "
        "coding file given, or the term is not in it).",
        f"- `raw/records{tag}.csv`: the raw export the cut was built from (after blinding and "
        "de-identification), hashed in the manifest.",
        f"- `acrf/index{tag}.html`: the annotated CRF (label, variable, type, choices, SDTM target).",
        f"- `read_tables{tag}.sas`, `read_tables{tag}.R`: read the tables with labels and formats "
        "(run with this folder as the working folder).",
    ]
    if sdtm:
        lines += [
            f"- `sdtm/*{tag}.xpt`: SDTM domains (SDTMIG 3.4) as SAS transport v5, with their "
            "supplemental qualifiers (`supp--`), related records (`relrec`) and subject elements "
            "(`se`); "
            f"`sdtm/define{tag}.xml` (Define-XML 2.1) describes them, `sdtm/define{tag}.html` "
            f"shows it; `sdtm/define{tag}.json` lists variable renames and value cuts. "
            + ("EX (the actual treatment) is written only after unblinding; EC holds the "
               "masked exposure." if blinded else "EX holds the actual treatment.")]
    lines += [
        f"- `manifest{tag}.json`: what the cut was made from (project, tool, sync run, records "
        "changed since it, query counts) and the SHA-256 and row count of every file.", "",
        "## Checking the SDTM with CDISC CORE", "",
        "CDISC's open-source conformance engine (`pip install cdisc-rules-engine`, Python 3.12; "
        "`core.py` and its rule cache `resources/cache` from the engine's repository), run from "
        "this folder:", "",
        f"    {CORE_COMMAND}", "",
        "What it still reports on the demo trial, and why, is listed in the tool's README.", ""]
    return "\n".join(lines)
