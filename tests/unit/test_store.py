"""The state store on real files: atomic saves, damage detection, last-good recovery, modes."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ript.protocol.descriptions import PushBinding
from riptphone import store as store_module
from riptphone.store import (
    REGISTRATION,
    TOKENS,
    Identity,
    LoadResult,
    RecordError,
    Registration,
    StateStore,
    StoreError,
    Tokens,
)

ADVERTISEMENT = (
    "1 in: opus; PCMU; PCMA; telephone-event; CN;\n"
    "1 out: opus,ptime=20; PCMU; PCMA; telephone-event; CN;"
)
PASSWORD = "broker-pw-Zq9xSECRET"
ACCESS = "access-tok-Kx7SECRET"
REFRESH = "refresh-tok-Pw3SECRET"
SECRETS = (PASSWORD, ACCESS, REFRESH)
HANDLER_ID = "0b1f3c0e-7a51-4d8e-9a3f-2d6c1e5b7a90"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def registration(
    uri: str = "https://p.example/handlers/1", password: str = PASSWORD
) -> Registration:
    return Registration(
        handler_id=HANDLER_ID,
        handler_uri=uri,
        tg_uri="https://p.example/tgs/7",
        advertisement=ADVERTISEMENT,
        push=PushBinding(
            broker="mqtts://p.example:8883",
            topic="ript/handlers/1",
            username="h1",
            password=password,
        ),
    )


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state")


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


# --- round trips and modes ------------------------------------------------------------------


def test_round_trip_and_envelope(store: StateStore) -> None:
    assert store.load("settings") == LoadResult(None, None, False)
    store.save(
        "settings", {"volume": 7, "name": "Desk phone", "codecs": ["opus", "PCMU"]}, secret=False
    )
    result = store.load("settings")
    assert result == LoadResult({"volume": 7, "name": "Desk phone", "codecs": ["opus", "PCMU"]})
    envelope = json.loads(store.path("settings").read_bytes())
    assert envelope["format"] == 1
    assert envelope["secret"] is False
    assert len(envelope["sha256"]) == 64
    assert envelope["data"]["volume"] == 7
    # The first save is its own last-good copy; the second keeps the first as last-good.
    first = store.path("settings").read_bytes()
    assert store.last_good_path("settings").read_bytes() == first
    store.save("settings", {"volume": 8}, secret=False)
    assert store.last_good_path("settings").read_bytes() == first
    assert store.load("settings").data == {"volume": 8}
    assert store.names() == ["settings"]


def test_modes_exact_whatever_the_umask(tmp_path: Path) -> None:
    for umask in (0o000, 0o022, 0o077):
        old = os.umask(umask)
        try:
            directory = tmp_path / f"state-{umask:o}"
            st_ = StateStore(directory)
            assert mode_of(directory) == 0o700
            for _ in range(2):  # the second round also writes the last-good copies
                st_.save("secret", {"k": "v"}, secret=True)
                st_.save("public", {"k": "v"}, secret=False)
            assert mode_of(st_.path("secret")) == 0o600
            assert mode_of(st_.last_good_path("secret")) == 0o600
            assert mode_of(st_.path("public")) == 0o644
            assert mode_of(st_.last_good_path("public")) == 0o644
        finally:
            os.umask(old)


def test_existing_loose_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    StateStore(directory)
    assert mode_of(directory) == 0o700


def test_secret_file_never_created_readable(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_open = os.open

    def spy(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if ".tmp-" in str(path):
            seen.append(mode)
            assert flags & os.O_EXCL and flags & os.O_CREAT
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", spy)
    store.save("tokens", {"a": 1}, secret=True)
    store.save("tokens", {"a": 2}, secret=True)
    assert seen == [0o600, 0o600, 0o600]  # main, then last-good + main


def test_loose_secret_mode_fixed_and_reported(store: StateStore) -> None:
    store.save("tokens", {"access": ACCESS}, secret=True)
    os.chmod(store.path("tokens"), 0o644)
    result = store.load("tokens")
    assert result.data == {"access": ACCESS}
    assert result.problem is not None and "0644" in result.problem and "0600" in result.problem
    assert ACCESS not in result.problem
    assert mode_of(store.path("tokens")) == 0o600
    assert store.load("tokens").problem is None


# --- interrupted saves -----------------------------------------------------------------------


class PowerCutError(OSError):
    pass


def interrupt_at(monkeypatch: pytest.MonkeyPatch, k: int, replaced: list[str]) -> None:
    """Make the k-th write/fsync/replace of the next save fail, like a power cut at that step."""
    steps = iter(range(1_000_000))
    real_write, real_fsync, real_replace = os.write, os.fsync, os.replace

    def step() -> None:
        if next(steps) == k:
            raise PowerCutError(5, "Input/output error")

    def write(fd: int, data: Any) -> int:
        step()
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        step()
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        step()
        real_replace(src, dst)
        replaced.append(Path(dst).name)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("secret", [True, False])
def test_save_interrupted_at_every_step_keeps_last_committed_value(
    tmp_path: Path, secret: bool
) -> None:
    completed = False
    k = 0
    while not completed:
        directory = tmp_path / f"run{k}"
        st_ = StateStore(directory)
        st_.save("rec", {"v": 1}, secret=secret)
        st_.save("rec", {"v": 2}, secret=secret)  # main = 2, last-good = 1
        replaced: list[str] = []
        with pytest.MonkeyPatch.context() as mp:
            interrupt_at(mp, k, replaced)
            try:
                st_.save("rec", {"v": 3}, secret=secret)
                completed = True
            except StoreError as exc:
                assert "rec.json" in str(exc) and "Input/output error" in str(exc)
        reopened = StateStore(directory)
        result = reopened.load("rec")
        expected = 3 if "rec.json" in replaced else 2
        assert result.data == {"v": expected}, f"step {k}"
        assert result.problem is None
        assert leftovers(directory) == []
        # The store still works after the failed save.
        reopened.save("rec", {"v": 4}, secret=secret)
        assert reopened.load("rec").data == {"v": 4}
        k += 1
    assert k == 9  # 8 steps (2 x write, fsync, replace, dir fsync) + the clean run


def test_first_save_interrupted_leaves_nothing(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    replaced: list[str] = []
    interrupt_at(monkeypatch, 2, replaced)  # the rename
    with pytest.raises(StoreError):
        store.save("rec", {"v": 1}, secret=True)
    monkeypatch.undo()
    assert store.load("rec") == LoadResult(None)
    assert leftovers(store.directory) == []


def test_stale_temp_files_removed_at_open(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    st_ = StateStore(directory)
    st_.save("rec", {"v": 1}, secret=True)
    stale = [
        directory / ".rec.json.tmp-0123abcd",
        directory / ".registration.json.tmp-ff",
    ]
    for path in stale:
        path.write_bytes(b'{"format": 1, "secr')  # a write cut short
    unrelated = directory / "notes.txt"
    unrelated.write_text("keep me")
    assert leftovers(directory) == sorted(p.name for p in stale)
    StateStore(directory)
    assert leftovers(directory) == []
    assert unrelated.read_text() == "keep me"
    assert StateStore(directory).recover() == []
    assert st_.load("rec").data == {"v": 1}


# --- damaged files ---------------------------------------------------------------------------


def two_versions(store: StateStore, name: str = "rec") -> tuple[bytes, bytes]:
    store.save(name, {"v": 1, "who": "first"}, secret=True)
    store.save(name, {"v": 2, "who": "second"}, secret=True)
    return store.last_good_path(name).read_bytes(), store.path(name).read_bytes()


def test_truncation_at_every_length_falls_back_and_restores(store: StateStore) -> None:
    good, main = two_versions(store)
    path = store.path("rec")
    for length in range(len(main)):
        path.write_bytes(main[:length])
        result = store.load("rec")
        if length == len(main) - 1:  # only the final newline is gone: still the whole record
            assert result == LoadResult({"v": 2, "who": "second"})
            continue
        assert result.data == {"v": 1, "who": "first"}, length
        assert result.recovered
        assert result.problem is not None
        assert str(path) in result.problem and "restored" in result.problem
        assert "\n" not in result.problem
        assert path.read_bytes() == good  # the main file is whole again
        assert mode_of(path) == 0o600


def test_every_bit_flip_is_detected(store: StateStore) -> None:
    good, main = two_versions(store)
    path = store.path("rec")
    for position in range(len(main)):
        for bit in (0, 3, 5, 7):
            damaged = bytearray(main)
            damaged[position] ^= 1 << bit
            path.write_bytes(bytes(damaged))
            result = store.load("rec")
            assert result.data == {"v": 1, "who": "first"}, (position, bit)
            assert result.recovered and result.problem is not None
            assert path.read_bytes() == good


def test_missing_main_restored_from_last_good(store: StateStore) -> None:
    good, _ = two_versions(store)
    store.path("rec").unlink()
    result = store.load("rec")
    assert result.data == {"v": 1, "who": "first"}
    assert result.problem is not None and "missing" in result.problem
    assert store.path("rec").read_bytes() == good


def test_both_copies_corrupt_gives_none_and_a_problem(store: StateStore) -> None:
    two_versions(store)
    store.path("rec").write_bytes(b"\x00" * 40)
    store.last_good_path("rec").write_bytes(b'{"format": 1, "secret": true, "sha256": "')
    result = store.load("rec")
    assert result.data is None
    assert result.problem is not None
    assert "lost" in result.problem and "rec.json" in result.problem
    assert not result.recovered
    # A new save works and does not copy the damaged main over the last-good.
    store.save("rec", {"v": 5}, secret=True)
    assert store.load("rec") == LoadResult({"v": 5})


def test_save_over_damaged_main_keeps_last_good(store: StateStore) -> None:
    good, _ = two_versions(store)
    store.path("rec").write_bytes(b"garbage")
    store.save("rec", {"v": 3}, secret=True)
    assert store.last_good_path("rec").read_bytes() == good


def test_main_replaced_by_directory_or_symlink_is_not_followed(
    store: StateStore, tmp_path: Path
) -> None:
    two_versions(store)
    target = tmp_path / "elsewhere.json"
    target.write_bytes(store.path("rec").read_bytes())
    store.path("rec").unlink()
    store.path("rec").symlink_to(target)
    result = store.load("rec")
    assert result.data == {"v": 1, "who": "first"}
    assert result.recovered
    assert not store.path("rec").is_symlink()


def test_oversized_main_is_corrupt(store: StateStore) -> None:
    two_versions(store)
    store.path("rec").write_bytes(b" " * (store_module.MAX_RECORD_BYTES + 10))
    result = store.load("rec")
    assert result.data == {"v": 1, "who": "first"}


@settings(max_examples=150, deadline=None)
@given(junk=st.binary(max_size=300), with_last_good=st.booleans())
def test_random_bytes_as_main_never_raise(junk: bytes, with_last_good: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        st_ = StateStore(Path(tmp) / "s")
        st_.save("rec", {"v": 1}, secret=False)
        if with_last_good:
            st_.save("rec", {"v": 2}, secret=False)
        st_.path("rec").write_bytes(junk)
        result = st_.load("rec")
        # Either the first save's own copy or, after a second save, the previous version.
        assert result.data == {"v": 1}
        assert result.problem is not None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> StateStore:
    return StateStore(tmp_path_factory.mktemp("hyp") / "state")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.dictionaries(st.text(), json_values, max_size=6), secret=st.booleans())
def test_any_json_dict_round_trips(
    shared_store: StateStore, data: dict[str, Any], secret: bool
) -> None:
    shared_store.save("hyp", data, secret=secret)
    result = shared_store.load("hyp")
    assert result.problem is None
    assert result.data == data
    assert json.dumps(result.data, sort_keys=True) == json.dumps(data, sort_keys=True)


@pytest.mark.parametrize(
    "bad",
    [
        {"x": float("nan")},
        {"x": (1, 2)},
        {"x": {1: "a"}},
        {"x": b"bytes"},
        {"x": [object()]},
    ],
)
def test_unstorable_data_is_refused_and_nothing_changes(
    store: StateStore, bad: dict[str, Any]
) -> None:
    store.save("rec", {"v": 1}, secret=False)
    before = store.path("rec").read_bytes()
    with pytest.raises(StoreError, match="cannot store"):
        store.save("rec", bad, secret=False)
    assert store.path("rec").read_bytes() == before
    assert store.last_good_path("rec").read_bytes() == before  # the first save's own copy


@pytest.mark.parametrize("name", ["", "../etc", "A", "x.json", "a/b", ".hidden", "x" * 65])
def test_bad_record_names(store: StateStore, name: str) -> None:
    with pytest.raises(StoreError, match="record name"):
        store.load(name)


def test_store_directory_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(StoreError, match=str(tmp_path / "f")):
        StateStore(tmp_path / "f")


# --- delete and wipe -------------------------------------------------------------------------


def test_delete_removes_one_record(store: StateStore) -> None:
    two_versions(store, "rec")
    two_versions(store, "other")
    (store.directory / ".rec.json.tmp-abc").write_bytes(b"x")
    (store.directory / ".other.json.tmp-abc").write_bytes(b"x")
    store.delete("rec")
    assert store.load("rec") == LoadResult(None)
    assert not store.last_good_path("rec").exists()
    assert leftovers(store.directory) == [".other.json.tmp-abc"]
    assert store.load("other").data == {"v": 2, "who": "second"}
    store.delete("never-saved")  # deleting nothing is fine


def test_wipe_removes_every_record_and_nothing_else(store: StateStore) -> None:
    store.save_registration(registration())
    store.save_tokens(Tokens(ACCESS, REFRESH, 1_800_000_000.0))
    store.save_tokens(Tokens(ACCESS, None, 1_800_000_100.0))
    store.save("calllog", {"calls": []}, secret=False)
    (store.directory / ".tokens.json.tmp-1234").write_bytes(b"{")
    (store.directory / "README").write_text("not ours")
    store.wipe()
    assert store.names() == []
    assert store.load_registration().data is None
    assert store.load_tokens().data is None
    remaining = sorted(p.name for p in store.directory.iterdir())
    assert remaining == [".lock", "README"]


# --- typed records ---------------------------------------------------------------------------


def make_identity(with_chain: bool) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if not with_chain:
        return Identity(key_pem)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phone")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) * 2
    return Identity(key_pem, chain, "https://p.example/certs/1")


def test_typed_records_round_trip_as_secret_files(store: StateStore) -> None:
    reg = registration()
    store.save_registration(reg)
    assert store.load_registration() == LoadResult(reg)
    pending = Registration(
        Registration.new_handler_id(), None, "https://p.example/tgs/7", ADVERTISEMENT
    )
    store.save_registration(pending)
    assert store.load_registration().data == pending
    tokens = Tokens(ACCESS, REFRESH, 1_800_000_000.5)
    store.save_tokens(Tokens(ACCESS, None, 1_700_000_000.0))
    store.save_tokens(tokens)
    assert store.load_tokens().data == tokens
    for with_chain in (False, True):
        identity = make_identity(with_chain)
        store.save_identity(identity)
        assert store.load_identity().data == identity
    for name in ("registration", "tokens", "identity"):
        assert mode_of(store.path(name)) == 0o600
        assert mode_of(store.last_good_path(name)) == 0o600


def test_record_with_wrong_fields_falls_back_to_last_good(
    store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    reg = registration()
    store.save_registration(reg)
    bad = registration().to_json()
    bad["handler_uri"] = "http://p.example/handlers/1"  # valid JSON, valid checksum, wrong field
    store.save(REGISTRATION, bad, secret=True)
    with caplog.at_level(logging.DEBUG):
        result = store.load_registration()
    assert result.data == reg
    assert result.recovered
    assert result.problem is not None and "handler_uri" in result.problem
    assert "https://" in result.problem
    assert store.load_registration() == LoadResult(reg)
    assert any(result.problem in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"handler_id": "not-a-uuid"}, "handler_id"),
        ({"handler_id": "0B1F3C0E-7A51-4D8E-9A3F-2D6C1E5B7A90"}, "handler_id"),
        ({"handler_id": "0b1f3c0e-7a51-1d8e-9a3f-2d6c1e5b7a90"}, "handler_id"),  # uuid1
        ({"tg_uri": "ftp://x"}, "tg_uri"),
        ({"advertisement": "1 sideways: opus;"}, "advertisement"),
        ({"push": ["broker"]}, "push"),
        ({"extra": 1}, "extra"),
    ],
)
def test_registration_validation(change: dict[str, Any], field: str) -> None:
    data = {**registration().to_json(), **change}
    with pytest.raises(RecordError, match=field) as info:
        Registration.from_json(data)
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize("field", ["handler_id", "handler_uri", "tg_uri", "advertisement", "push"])
def test_registration_missing_field(field: str) -> None:
    data = registration().to_json()
    del data[field]
    with pytest.raises(RecordError, match=f"no '{field}' field"):
        Registration.from_json(data)


def test_constructor_refuses_bad_values() -> None:
    with pytest.raises(RecordError, match="handler_uri"):
        registration(uri="http://p.example/h")
    with pytest.raises(RecordError, match="expires_at"):
        Tokens(ACCESS, REFRESH, float("inf"))
    with pytest.raises(RecordError, match="expires_at"):
        Tokens.from_json({"access_token": ACCESS, "refresh_token": None, "expires_at": True})
    with pytest.raises(RecordError, match="access_token"):
        Tokens("", REFRESH, 1.0)
    with pytest.raises(RecordError, match="P-256"):
        key = ed25519.Ed25519PrivateKey.generate()
        Identity(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with pytest.raises(RecordError, match="key_pem"):
        Identity(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(RecordError, match="cert_chain_pem"):
        Identity(make_identity(False).key_pem, b"not a certificate")


# --- secrets stay secret ---------------------------------------------------------------------


def damage_checksum(path: Path) -> None:
    """Flip a checksum digit so the secret contents stay in the file but the file is bad."""
    raw = bytearray(path.read_bytes())
    at = raw.index(b'"sha256":"') + len(b'"sha256":"')
    raw[at] = ord("0") if raw[at] != ord("0") else ord("1")
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "damage",
    [
        damage_checksum,
        lambda p: p.write_bytes(p.read_bytes()[:-30]),
        lambda p: os.chmod(p, 0o666),
    ],
)
def test_secrets_never_in_problems_logs_or_reprs(
    store: StateStore, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None]
) -> None:
    reg, tokens = registration(), Tokens(ACCESS, REFRESH, 1_800_000_000.0)
    problems: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for _ in range(2):
            store.save_registration(reg)
            store.save_tokens(tokens)
        for name in (REGISTRATION, TOKENS):
            for both in (False, True):
                damage(store.path(name))
                if both:
                    damage(store.last_good_path(name))
                result = store.load_registration() if name == REGISTRATION else store.load_tokens()
                assert result.problem is not None
                problems.append(result.problem)
        try:
            store.save(TOKENS, {"access_token": ACCESS, "bad": float("nan")}, secret=True)
        except StoreError as exc:
            problems.append(str(exc))
    assert len(problems) == 5
    texts = problems + [r.getMessage() for r in caplog.records] + [repr(reg), repr(tokens)]
    texts.append(repr(make_identity(False)))
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
        assert "PRIVATE KEY" not in text
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_problem_is_one_line(store: StateStore) -> None:
    two_versions(store)
    store.path("rec").write_bytes(b"{\n\n")
    store.last_good_path("rec").write_bytes(b"\n")
    result = store.load("rec")
    assert result.problem is not None
    assert result.problem.splitlines() == [result.problem]


def test_typed_load_enforces_0600_even_if_saved_as_public(store: StateStore) -> None:
    store.save(TOKENS, Tokens(ACCESS, REFRESH, 1.0).to_json(), secret=False)
    assert mode_of(store.path(TOKENS)) == 0o644
    result = store.load_tokens()
    assert result.data == Tokens(ACCESS, REFRESH, 1.0)
    assert result.problem is not None and "0644" in result.problem
    assert mode_of(store.path(TOKENS)) == 0o600


def test_concurrent_saves_from_threads_never_mix(store: StateStore) -> None:
    def worker(n: int) -> None:
        for i in range(20):
            store.save("rec", {"writer": n, "i": i}, secret=True)
            result = store.load("rec")
            assert result.problem is None and result.data is not None

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = store.load("rec")
    assert final.problem is None
    assert final.data is not None and final.data["i"] == 19
    assert leftovers(store.directory) == []


def test_deeply_nested_data_is_refused(store: StateStore) -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(StoreError, match="nested too deeply"):
        store.save("rec", {"x": deep}, secret=False)


def test_registration_push_is_a_binding_saved_in_the_old_format(store: StateStore) -> None:
    saved = registration()
    store.save_registration(saved)
    on_disk = json.loads((store.directory / "registration.json").read_text())
    assert on_disk["data"]["push"] == {
        "broker": "mqtts://p.example:8883",
        "topic": "ript/handlers/1",
        "username": "h1",
        "password": PASSWORD,
    }
    loaded = store.load_registration().data
    assert loaded == saved
    assert loaded is not None and isinstance(loaded.push, PushBinding)
    assert loaded.push.host == "p.example"


def test_registration_push_that_is_no_binding_is_refused() -> None:
    data = {**registration().to_json(), "push": {"broker": "ftp://x", "topic": "t"}}
    with pytest.raises(RecordError, match="'push' is not a push binding"):
        Registration.from_json(data)
