"""`ecrf serve`: tokens come from files or the environment, shaped as REDCap issues them."""
from __future__ import annotations

from click.testing import CliRunner

from sync.cli import cli
from sync.server import project_token


def test_a_token_that_is_not_redcap_shaped_is_refused(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--db", str(tmp_path / "r.sqlite")],
                                env={"ECRF_SERVE_TOKEN": "abc"})
    assert result.output == ("Error: ECRF_SERVE_TOKEN must hold 32 upper-case hexadecimal "
                             "characters, as REDCap issues them (it holds 3 characters)\n")
    assert result.exit_code != 0


def test_the_first_token_is_kept_and_new_files_get_a_fresh_one(tmp_path):
    first, made = project_token(tmp_path / "a.sqlite")
    assert len(first) == 32 and first == first.upper() and made
    assert project_token(tmp_path / "a.sqlite") == (first, False)
    assert project_token(tmp_path / "b.sqlite")[0] != first
