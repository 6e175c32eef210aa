"""The version both programs report (``--version``): the installed distribution's."""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    """``ript-phone``'s version as installed, or ``0+unknown`` when run from a bare checkout."""
    try:
        return metadata.version("ript-phone")
    except metadata.PackageNotFoundError:
        return "0+unknown"
