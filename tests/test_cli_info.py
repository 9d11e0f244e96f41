from typer.testing import CliRunner

from dmd_pipeline.cli.app import app


def test_info_lists_torch_version() -> None:
    result = CliRunner().invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    assert '"torch": "2.13.0' in result.output
