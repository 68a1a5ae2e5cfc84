"""The right project: the sync runs only on a REDCap project holding the trial's CRF.

A token of another project (or of the trial's project before `ecrf deploy`) would otherwise
give a run that "succeeds" on zero records. The CRF contract names what must be there: its
events, and its fields on their forms.
"""
from __future__ import annotations

from collections.abc import Mapping

from sync.crf.contract import TRIAL_CONTRACT, Contract
from sync.crf.dictionary import Dictionary
from sync.errors import ConfigError

SHOWN = 8
"""Names listed per kind before "and N more"."""


def missing_crf(dictionary: Dictionary, contract: Contract = TRIAL_CONTRACT) -> dict[str, list[str]]:
    """The contract's events, forms and fields the project lacks (a field on another form
    counts as missing from its form)."""
    fields = set(dictionary.fields)
    forms = set(dictionary.forms)
    wanted_forms = list(dict.fromkeys(f.form for f in contract.fields))
    return {
        "events": [e.unique_event_name for e in contract.events
                   if e.unique_event_name not in dictionary.event_names],
        "forms": [form for form in wanted_forms if form not in forms],
        "fields": [f.variable for f in contract.fields
                   if f.variable not in fields or dictionary.form_of(f.variable) != f.form],
    }


def require_trial_crf(dictionary: Dictionary, info: Mapping[str, object], url: str,
                      contract: Contract = TRIAL_CONTRACT) -> None:
    """Raise (exit 2) naming what is missing when the project lacks the trial's CRF."""
    missing = {kind: names for kind, names in missing_crf(dictionary, contract).items() if names}
    if not missing:
        return
    listed = "; ".join(
        f"{kind} {', '.join(names[:SHOWN])}" + (f" and {len(names) - SHOWN} more"
                                                 if len(names) > SHOWN else "")
        for kind, names in missing.items())
    raise ConfigError(
        f"the project at {url} (project_id {info.get('project_id', '?')}, "
        f"\"{info.get('project_title', '')}\") does not hold the trial's CRF: it lacks {listed}. "
        "Nothing was synced. Check that REDCAP_API_TOKEN is the trial project's token; on the "
        "right project, deploy the CRF first (`ecrf deploy`).")
