from __future__ import annotations

import hashlib

import pytest

from cache.errors import InvalidKey
from cache.keys import KEY_LEN, KeyDeriver, is_valid_key, key_namespace, model_namespace, validate_key

SECRET = b"s" * 32
DIGEST = hashlib.sha256(b"pixels").hexdigest()


def test_same_content_same_key_across_instances() -> None:
    ns = model_namespace("crnn", "1")
    assert KeyDeriver(SECRET).derive(ns, DIGEST) == KeyDeriver(bytes(SECRET)).derive(ns, DIGEST)


def test_key_format_and_namespace_prefix() -> None:
    ns = model_namespace("crnn", "1")
    key = KeyDeriver(SECRET).derive(ns, DIGEST)
    assert len(key) == KEY_LEN == 32
    assert is_valid_key(key) and validate_key(key) == key
    assert key.startswith(ns) and key_namespace(key) == ns


def test_secret_changes_every_key() -> None:
    ns = model_namespace("crnn", "1")
    a = KeyDeriver(SECRET).derive(ns, DIGEST)
    b = KeyDeriver(b"t" * 32).derive(ns, DIGEST)
    assert a[:4] == b[:4] and a[4:] != b[4:]


def test_model_version_gives_new_namespace_and_key() -> None:
    d = KeyDeriver(SECRET)
    k1 = d.derive(model_namespace("crnn", "1"), DIGEST)
    k2 = d.derive(model_namespace("crnn", "2"), DIGEST)
    k3 = d.derive(model_namespace("other", "1"), DIGEST)
    assert len({k1[:4], k2[:4], k3[:4]}) == 3
    assert len({k1, k2, k3}) == 3


def test_key_is_not_a_plain_hash_of_the_content() -> None:
    key = KeyDeriver(SECRET).derive(model_namespace("crnn", "1"), DIGEST)
    assert DIGEST[:8] not in key
    assert hashlib.sha256(DIGEST.encode()).hexdigest()[:8] not in key


def test_derivation_is_pinned() -> None:
    # Pinned: a change to the derivation would silently orphan every stored result.
    ns = model_namespace("crnn-mbv1-bilstm", "2026.1")
    assert ns == "cwnh"
    assert KeyDeriver(SECRET).derive(ns, DIGEST) == "cwnhh3wvg6pkmyrnq4hvmbf6s7ktei4t"


@pytest.mark.parametrize("bad", [
    "", "a" * 31, "a" * 33, "A" * 32, "a" * 31 + "1", "a" * 31 + "8", "../" + "a" * 29,
    "a" * 31 + "/", "a" * 31 + "\n", "a" * 31 + "-", "%2e%2e" + "a" * 26, "a" * 16 + " " + "a" * 15,
])
def test_malformed_keys_rejected(bad: str) -> None:
    assert not is_valid_key(bad)
    with pytest.raises(InvalidKey):
        validate_key(bad)


def test_short_secret_refused() -> None:
    with pytest.raises(ValueError):
        KeyDeriver(b"short")


def test_repr_hides_secret() -> None:
    assert SECRET.decode() not in repr(KeyDeriver(SECRET))


def test_bad_inputs_refused() -> None:
    d = KeyDeriver(SECRET)
    with pytest.raises(ValueError):
        d.derive("ABCD", DIGEST)
    with pytest.raises(ValueError):
        d.derive(model_namespace("crnn", "1"), "xyz")
    with pytest.raises(ValueError):
        model_namespace("", "1")
