"""Signature verification: the pure function at the front door."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.webhook.signature import Rejection, SignatureError, compute_v0, parse_header, sign, verify

BODY = b'{"eventId":"e1","eventType":"order.status.changed","payloadVersion":"v1","data":{}}'
NOW = 1_800_000_000


def _verify(
    header: str | None, body: bytes = BODY, secrets: tuple[str, ...] = ("s1",), now: float = NOW
) -> int:
    return verify(header, body, secrets, now, 300)


def test_valid_signature_returns_t() -> None:
    assert _verify(sign("s1", NOW, BODY)) == NOW


def test_signed_message_is_t_dot_raw_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"s1", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert compute_v0("s1", NOW, BODY) == expected


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, Rejection.MISSING),
        ("", Rejection.MISSING),
        ("   ", Rejection.MISSING),
        ("v0=" + "a" * 64, Rejection.MALFORMED),
        (f"t={NOW}", Rejection.MALFORMED),
        (f"t={NOW},v0=abc", Rejection.MALFORMED),
        (f"t={NOW},v0=" + "G" * 64, Rejection.MALFORMED),
        (f"t={NOW},v0=" + "A" * 64, Rejection.MALFORMED),  # uppercase hex is not what Bunjang sends
        ("t=abc,v0=" + "a" * 64, Rejection.MALFORMED),
        (f"t=-{NOW},v0=" + "a" * 64, Rejection.MALFORMED),
        (f"t={NOW},t={NOW},v0=" + "a" * 64, Rejection.MALFORMED),
        (f"t={NOW},v0=" + "a" * 64, Rejection.INVALID),
        ("x" * 5000, Rejection.MALFORMED),
    ],
)
def test_each_way_of_being_invalid(header: str | None, reason: Rejection) -> None:
    with pytest.raises(SignatureError) as err:
        _verify(header)
    assert err.value.reason is reason


def test_wrong_secret_is_invalid() -> None:
    with pytest.raises(SignatureError) as err:
        _verify(sign("other", NOW, BODY))
    assert err.value.reason is Rejection.INVALID


def test_body_changed_by_one_byte_is_invalid() -> None:
    header = sign("s1", NOW, BODY)
    for i in (0, len(BODY) // 2, len(BODY) - 1):
        changed = BODY[:i] + bytes([BODY[i] ^ 1]) + BODY[i + 1 :]
        with pytest.raises(SignatureError) as err:
            _verify(header, body=changed)
        assert err.value.reason is Rejection.INVALID


def test_any_configured_secret_may_sign() -> None:
    assert _verify(sign("new", NOW, BODY), secrets=("old", "new")) == NOW
    assert _verify(sign("old", NOW, BODY), secrets=("old", "new")) == NOW


def test_any_v0_may_match_and_unknown_keys_are_ignored() -> None:
    good = compute_v0("s1", NOW, BODY)
    assert _verify(f"t={NOW},v0={'0' * 64},v1=zzz,v0={good}") == NOW
    assert _verify(f" t = {NOW} , v0 = {good} ,extra") == NOW


@pytest.mark.parametrize(("skew", "ok"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)])
def test_tolerance_edges(skew: int, ok: bool) -> None:
    header = sign("s1", NOW - skew, BODY)
    if ok:
        assert _verify(header) == NOW - skew
    else:
        with pytest.raises(SignatureError) as err:
            _verify(header)
        assert err.value.reason is Rejection.STALE


@given(
    st.one_of(st.none(), st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
)
def test_header_parsing_never_raises_anything_but_signature_error(header: str | None) -> None:
    try:
        parsed = parse_header(header)
    except SignatureError:
        return
    assert parsed.v0 and all(len(v) == 64 for v in parsed.v0)


@given(st.text(alphabet="t=v0,0123456789abcdef ", max_size=200), st.binary(max_size=64))
def test_verify_never_raises_anything_but_signature_error(header: str, body: bytes) -> None:
    with contextlib.suppress(SignatureError):
        verify(header, body, ("s1", "s2"), NOW, 300)
