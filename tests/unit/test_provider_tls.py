"""The provider's certificate store keeps URI paths inside its certs directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from riptprovider.tls import load_or_create_ca


@pytest.mark.parametrize("account", [".", "..", "a/b", "", "x" * 65])
def test_a_path_outside_the_certs_directory_is_never_read(tmp_path: Path, account: str) -> None:
    ca = load_or_create_ca(tmp_path)
    # Files an attacker would like to reach with /tgs/{account}/certs/{serial}.
    (tmp_path / "certs").mkdir(exist_ok=True)
    (tmp_path / "certs" / "abc.pem").write_bytes(b"secret")
    (tmp_path / "abc.pem").write_bytes(b"secret")
    assert ca.chain(account, "abc") is None


def test_a_good_name_reads_its_chain(tmp_path: Path) -> None:
    ca = load_or_create_ca(tmp_path)
    (tmp_path / "certs" / "alice").mkdir(parents=True)
    (tmp_path / "certs" / "alice" / "abc.pem").write_bytes(b"chain")
    assert ca.chain("alice", "abc") == b"chain"
    assert ca.chain("alice", "../x") is None
