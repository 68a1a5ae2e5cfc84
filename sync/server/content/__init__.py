"""The dispatch table: one entry per REDCap (content, action), one module per content."""
from __future__ import annotations

from typing import Callable

from sync.server.content import (
    arms, dags, events, field_names, file_repository, files, form_event_mapping, instruments, log,
    metadata, project, record_import, records, repeating, surveys, users, version,
)
from sync.server.content.next_record import generate_next_record_name

HANDLERS: dict[tuple[str, str], Callable] = {
    ("version", "export"): version.export,
    ("project", "export"): project.export_info,
    ("project", "import"): project.create,
    ("project_settings", "import"): project.import_info,
    ("metadata", "export"): metadata.export,
    ("metadata", "import"): metadata.import_metadata,
    ("instrument", "export"): instruments.export,
    ("pdf", "export"): instruments.export_pdf,
    ("exportFieldNames", "export"): field_names.export,
    ("arm", "export"): arms.export,
    ("arm", "import"): arms.import_arms,
    ("arm", "delete"): arms.delete,
    ("event", "export"): events.export,
    ("event", "import"): events.import_events,
    ("event", "delete"): events.delete,
    ("formEventMapping", "export"): form_event_mapping.export,
    ("formEventMapping", "import"): form_event_mapping.import_mapping,
    ("repeatingFormsEvents", "export"): repeating.export,
    ("repeatingFormsEvents", "import"): repeating.import_repeating,
    ("record", "export"): records.export,
    ("record", "import"): record_import.import_records,
    ("record", "delete"): records.delete,
    ("record", "rename"): records.rename,
    ("generateNextRecordName", "export"): generate_next_record_name,
    ("log", "export"): log.export,
    ("user", "export"): users.export_users,
    ("user", "import"): users.import_users,
    ("user", "delete"): users.delete_users,
    ("userRole", "export"): users.export_roles,
    ("userRole", "import"): users.import_roles,
    ("userRole", "delete"): users.delete_roles,
    ("userRoleMapping", "export"): users.export_role_mapping,
    ("userRoleMapping", "import"): users.import_role_mapping,
    ("dag", "export"): dags.export,
    ("dag", "import"): dags.import_dags,
    ("dag", "delete"): dags.delete,
    ("userDagMapping", "export"): dags.export_mapping,
    ("userDagMapping", "import"): dags.import_mapping,
    ("file", "export"): files.export_file,
    ("file", "import"): files.import_file,
    ("file", "delete"): files.delete_file,
    ("fileRepository", "createFolder"): file_repository.create_folder,
    ("fileRepository", "list"): file_repository.list_files,
    ("fileRepository", "export"): file_repository.export_file,
    ("fileRepository", "import"): file_repository.import_file,
    ("fileRepository", "delete"): file_repository.delete_file,
    ("surveyLink", "export"): surveys.link,
    ("surveyQueueLink", "export"): surveys.queue_link,
    ("surveyAccessCode", "export"): surveys.access_code,
    ("surveyReturnCode", "export"): surveys.return_code,
    ("participantList", "export"): surveys.participants,
}

for _content in [*log.EXPORT_DESCRIPTIONS, "record"]:
    HANDLERS[(_content, "export")] = log.logged_export(_content, HANDLERS[(_content, "export")])
