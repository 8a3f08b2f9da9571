"""Password hashes: they record their scrypt cost, the older three-part format still verifies, and
the cheap cost is used only under ``HUINONG_ENV=test``."""

import hashlib

import pytest

from storage.people import DUMMY_HASH, hash_password, verify_password


def _legacy_hash(password: str) -> str:
    """A hash as stored before the cost was recorded: production cost, ``scrypt$salt$digest``."""
    salt = bytes(range(16))
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def test_the_hash_records_its_cost_and_verifies():
    stored = hash_password("正确的密码 correct horse")
    scheme, n, r, p, salt, digest = stored.split("$")
    assert scheme == "scrypt" and (int(n), int(r), int(p)) == (2**4, 8, 1)  # the test cost
    assert len(salt) == 32 and len(digest) == 64
    assert verify_password("正确的密码 correct horse", stored)
    assert not verify_password("正确的密码 correct hors", stored)
    assert hash_password("same") != hash_password("same")  # salted


def test_production_cost_outside_the_test_env(monkeypatch):
    monkeypatch.setenv("HUINONG_ENV", "production")
    stored = hash_password("a-good-password")
    assert stored.split("$")[1:4] == ["16384", "8", "1"]
    monkeypatch.setenv("HUINONG_ENV", "test")
    assert verify_password("a-good-password", stored)  # verification follows the stored cost, not the env


def test_the_older_three_part_format_still_verifies():
    stored = _legacy_hash("old-password-123")
    assert verify_password("old-password-123", stored)
    assert not verify_password("old-password-124", stored)
    assert not verify_password("anything", DUMMY_HASH)


@pytest.mark.parametrize("stored", [
    "", "scrypt", "bcrypt$00$00", "scrypt$zz$00", "scrypt$16$8$1$00", "scrypt$x$8$1$00$00",
    "scrypt$15$8$1$" + "00" * 16 + "$" + "00" * 32,  # n not a power of two
    "scrypt$1048576$8$1$" + "00" * 16 + "$" + "00" * 32,  # beyond the memory bound
    "md5$16$8$1$" + "00" * 16 + "$" + "00" * 32,
])
def test_malformed_hashes_never_verify(stored):
    assert not verify_password("whatever", stored)
