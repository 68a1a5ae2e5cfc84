"""A deployed demo trial on the test server, for tests that need one with their own settings."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import SecretStr

from sync.config import Settings
from sync.connection import connect
from sync.demo import load_records
from sync.crf.deploy import deploy
from sync.crf.dictionary import load_dictionary

ROOT = Path(__file__).resolve().parents[1]
DICTIONARY = load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")


def deployed_trial(server, folder: Path, records: pd.DataFrame,
                   redcap_dir: Path = ROOT / "redcap") -> Settings:
    """A fresh project with the CRF deployed and `records` loaded; its state file in `folder`."""
    settings = Settings(REDCAP_API_URL=server.url,
                        REDCAP_API_TOKEN=SecretStr(server.create_project()),
                        state_path=folder / "state.sqlite", redcap_dir=redcap_dir)
    deploy(connect(settings), DICTIONARY)
    load_records(settings, records)
    return settings
