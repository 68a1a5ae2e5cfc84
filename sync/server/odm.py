"""Read a REDCap project XML (CDISC ODM 1.3.1 with REDCap's extensions) into a project design.

REDCap writes its own facts as `redcap:` attributes and elements: `redcap:Variable` and
`redcap:FieldType` on ItemDef, `redcap:UniqueEventName` on StudyEventDef,
`redcap:RepeatingInstrumentsAndEvents` in GlobalVariables, checkbox choices as
`redcap:CheckboxChoices` on the CodeList (`RC:Classes/ODM.php`).
"""
from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from sync.crf.redcap_spec import LEGACY_FIELD_TYPES, canonical_validation
from sync.server.render import ApiError
from sync.server.store import Event

ODM = "{http://www.cdisc.org/ns/odm/v1.3}"
RC = "{https://projectredcap.org}"

_ITEM_ATTRIBUTES = {
    "section_header": "SectionHeader", "field_note": "FieldNote",
    "branching_logic": "BranchingLogic", "custom_alignment": "CustomAlignment",
    "question_number": "QuestionNumber", "matrix_group_name": "MatrixGroupName",
    "field_annotation": "FieldAnnotation", "identifier": "Identifier",
    "required_field": "RequiredField", "matrix_ranking": "MatrixRanking",
}


@dataclass
class OdmProject:
    """What one project XML holds, in the store's terms."""

    title: str = ""
    info: dict[str, str] = field(default_factory=dict)
    fields: list[dict[str, str]] = field(default_factory=list)
    form_labels: dict[str, str] = field(default_factory=dict)
    arms: list[tuple[int, str]] = field(default_factory=list)
    events: list[tuple[Event, list[str]]] = field(default_factory=list)
    repeating: list[tuple[str, str, str]] = field(default_factory=list)
    dags: list[str] = field(default_factory=list)
    roles: list[dict[str, str]] = field(default_factory=list)
    surveys: list[dict[str, str]] = field(default_factory=list)
    data: list[tuple[str, str, str, int, str, str]] = field(default_factory=list)
    """(record, unique event name, repeat instrument, instance, ODM item name, value)."""
    files: list[tuple[str, str, str, int, str, str, bytes]] = field(default_factory=list)
    """(record, event, instrument, instance, field, file name, content) of file fields."""


def _text(element: ET.Element | None) -> str:
    return (element.text or "") if element is not None else ""


def _label(item: ET.Element) -> str:
    return _text(item.find(f"{ODM}Question/{ODM}TranslatedText"))


def _choices(item: ET.Element, code_lists: dict[str, ET.Element]) -> str:
    ref = item.find(f"{ODM}CodeListRef")
    if ref is None:
        return ""
    code_list = code_lists.get(ref.get("CodeListOID", ""))
    if code_list is None:
        return ""
    if code_list.get(f"{RC}CheckboxChoices"):
        return " | ".join(p.strip() for p in code_list.get(f"{RC}CheckboxChoices", "").split("|"))
    return " | ".join(
        f"{c.get('CodedValue')}, {_text(c.find(f'{ODM}Decode/{ODM}TranslatedText'))}"
        for c in code_list.findall(f"{ODM}CodeListItem"))


def _range(item: ET.Element, comparator: str) -> str:
    for check in item.findall(f"{ODM}RangeCheck"):
        if check.get("Comparator") == comparator:
            return _text(check.find(f"{ODM}CheckValue"))
    return ""


def _field(item: ET.Element, form: str, code_lists: dict[str, ET.Element]) -> dict[str, str]:
    field_type = item.get(f"{RC}FieldType", "text")
    field_type = LEGACY_FIELD_TYPES.get(field_type, field_type)
    validation = canonical_validation(item.get(f"{RC}TextValidationType", ""))
    choices = (item.get(f"{RC}Calculation") or item.get(f"{RC}SliderLabels")
               or ("" if field_type in ("yesno", "truefalse") else _choices(item, code_lists)))
    row = {"field_name": item.get(f"{RC}Variable", ""), "form_name": form,
           "field_type": field_type, "field_label": _label(item),
           "select_choices_or_calculations": choices,
           "text_validation_type_or_show_slider_number": validation,
           "text_validation_min": _range(item, "GE"), "text_validation_max": _range(item, "LE")}
    for key, attribute in _ITEM_ATTRIBUTES.items():
        row[key] = item.get(f"{RC}{attribute}", "")
    return row


def _metadata(version: ET.Element, project: OdmProject) -> None:
    groups = {g.get("OID", ""): g for g in version.findall(f"{ODM}ItemGroupDef")}
    items = {i.get("OID", ""): i for i in version.findall(f"{ODM}ItemDef")}
    code_lists = {c.get("OID", ""): c for c in version.findall(f"{ODM}CodeList")}
    seen: set[str] = set()
    for form in version.findall(f"{ODM}FormDef"):
        form_name = form.get(f"{RC}FormName", "")
        project.form_labels[form_name] = form.get("Name", form_name)
        for group_ref in form.findall(f"{ODM}ItemGroupRef"):
            group = groups.get(group_ref.get("ItemGroupOID", ""))
            for ref in group.findall(f"{ODM}ItemRef") if group is not None else []:
                item = items.get(ref.get("ItemOID", ""))
                variable = ref.get(f"{RC}Variable", "")
                if (item is None or item.get(f"{RC}FieldType") is None or variable in seen
                        or variable == f"{form_name}_complete"):
                    continue
                seen.add(variable)
                project.fields.append(_field(item, form_name, code_lists))


def _events(version: ET.Element, project: OdmProject) -> None:
    arms: dict[int, str] = {}
    for event in version.findall(f"{ODM}StudyEventDef"):
        arm = int(event.get(f"{RC}ArmNum", "1"))
        arms.setdefault(arm, event.get(f"{RC}ArmName", f"Arm {arm}"))
        forms = [r.get(f"{RC}FormName", "") for r in event.findall(f"{ODM}FormRef")]
        project.events.append((Event(
            0, arm, event.get(f"{RC}EventName", ""), event.get(f"{RC}UniqueEventName", ""),
            float(event.get(f"{RC}DayOffset") or 0), float(event.get(f"{RC}OffsetMin") or 0),
            float(event.get(f"{RC}OffsetMax") or 0), event.get(f"{RC}CustomEventLabel", "")),
            forms))
    project.arms = sorted(arms.items())


def _globals(study: ET.Element, project: OdmProject) -> None:
    glob = study.find(f"{ODM}GlobalVariables")
    if glob is None:
        return
    project.title = _text(glob.find(f"{ODM}StudyName"))
    for child in glob:
        if child.tag.startswith(RC) and len(child) == 0:
            project.info[child.tag[len(RC):]] = child.text or ""
    for rep in glob.iter(f"{RC}RepeatingInstrument"):
        project.repeating.append((rep.get(f"{RC}UniqueEventName", ""),
                                  rep.get(f"{RC}RepeatInstrument", ""),
                                  rep.get(f"{RC}CustomLabel", "")))
    for rep in glob.iter(f"{RC}RepeatingEvent"):
        project.repeating.append((rep.get(f"{RC}UniqueEventName", ""), "", ""))
    project.dags = [d.get("group_name", "") for d in glob.iter(f"{RC}DataAccessGroups")]
    project.roles = [dict(r.attrib) for r in glob.iter(f"{RC}UserRoles")]
    project.surveys = [dict(s.attrib) for s in glob.iter(f"{RC}Surveys")]


def _clinical(root: ET.Element, project: OdmProject, default_event: str) -> None:
    for subject in root.iter(f"{ODM}SubjectData"):
        record = subject.get("SubjectKey", "")
        events = subject.findall(f"{ODM}StudyEventData") or [subject]
        for event in events:
            name = event.get(f"{RC}UniqueEventName", default_event)
            event_key = int(event.get("StudyEventRepeatKey", "1") or 1)
            for form in event.findall(f"{ODM}FormData"):
                form_name = form.get("FormOID", "").removeprefix("Form.")
                form_key = int(form.get("FormRepeatKey", "1") or 1)
                instance = max(form_key, event_key)
                for item in form.iter(f"{ODM}ItemData"):
                    project.data.append((record, name, form_name, instance,
                                         item.get("ItemOID", ""), item.get("Value", "")))
                for item in form.iter(f"{ODM}ItemDataBase64Binary"):
                    project.files.append((record, name, form_name, instance,
                                          item.get("ItemOID", ""), item.get(f"{RC}DocName", ""),
                                          base64.b64decode((item.text or "").strip())))


def parse_odm(text: str, default_event: str = "event_1_arm_1") -> OdmProject:
    """Parse ODM project XML; a parse failure is REDCap's 400 for unreadable XML."""
    try:
        root = ET.fromstring(text.encode("utf-8") if isinstance(text, str) else text)
    except ET.ParseError as exc:
        raise ApiError(400, f"The ODM XML is not formatted correctly. Error: {exc}") from None
    project = OdmProject()
    study = root.find(f"{ODM}Study")
    if study is not None:
        _globals(study, project)
        version = study.find(f"{ODM}MetaDataVersion")
        if version is not None:
            _metadata(version, project)
            _events(version, project)
    first_event = project.events[0][0].unique_event_name if project.events else default_event
    _clinical(root, project, first_event)
    return project
