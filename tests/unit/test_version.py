"""``ript-phone --version`` and ``ript-provider --version`` name the installed version."""

from __future__ import annotations

from importlib import metadata

import pytest

from riptphone import cli as phone_cli
from riptprovider import cli as provider_cli


@pytest.mark.parametrize(
    ("main", "name"), [(phone_cli.main, "ript-phone"), (provider_cli.main, "ript-provider")]
)
def test_version(main: object, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])  # type: ignore[operator]
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"{name} {metadata.version('ript-phone')}"
