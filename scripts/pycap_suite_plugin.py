"""pytest plugin: point PyCap's integration suite at our server instead of redcapdemo.vumc.org.

It rewrites the suite's hard-coded host at the `requests` transport layer (every prepared request
to https://redcapdemo.vumc.org/api/ is sent to ECRF_SUITE_URL) and the suite reads its super token
from REDCAPDEMO_SUPERUSER_TOKEN, which scripts/pycap_suite.py sets to our server's super token.
"""
from __future__ import annotations

import os

import requests

DEMO_API = "https://redcapdemo.vumc.org/api/"
_original_send = requests.Session.send


def _send(self: requests.Session, request: requests.PreparedRequest, **kwargs: object
          ) -> requests.Response:
    target = os.environ.get("ECRF_SUITE_URL", "")
    if target and request.url and request.url.startswith(DEMO_API):
        request.url = target + request.url[len(DEMO_API):]
        kwargs["verify"] = False
    return _original_send(self, request, **kwargs)  # type: ignore[arg-type]


def pytest_configure(config: object) -> None:
    requests.Session.send = _send  # type: ignore[method-assign]


if os.environ.get("ECRF_SUITE_DOCTESTS"):
    import pytest

    @pytest.fixture(scope="session", autouse=True)
    def add_doctest_objects(doctest_namespace: dict) -> None:
        """What PyCap's `redcap/conftest.py` provides: `proj` on the doctest project."""
        from pathlib import Path

        from redcap import Project
        from tests.integration.conftest import (  # type: ignore[import-not-found]
            add_files_to_repository, create_project, grant_superuser_rights, redcapdemo_url,
        )
        token = create_project(redcapdemo_url(), os.environ["REDCAPDEMO_SUPERUSER_TOKEN"],
                               Path("tests/data/doctest_project.xml"))
        project = add_files_to_repository(grant_superuser_rights(Project(redcapdemo_url(),
                                                                         token)))
        doctest_namespace["proj"] = project
        doctest_namespace["TOKEN"] = token
