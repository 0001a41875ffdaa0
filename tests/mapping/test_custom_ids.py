"""Sealed ids of the caller's own voices and dictionaries: derived, per caller, never the Gradium uid."""

from __future__ import annotations

import uuid

import pytest

from gateway.custom_ids import CALLER, Caller, decode, encode, tenant_marker
from gateway.errors import GatewayError

A, B = Caller("gsk_shared", "a"), Caller("gsk_shared", "b")
FORWARD = Caller("gsk_own_key")


@pytest.mark.parametrize("uid", ["emuClone00000001", "-uP9MuGtBqAvEyxI", "3f1c9a7e-uuid-like-uid", "x"])
@pytest.mark.parametrize("style", ["b64", "uuid"])
def test_round_trip_per_caller(uid: str, style: str) -> None:
    public = encode("voice", uid, style, caller=A)
    assert uid not in public
    assert decode("voice", public, caller=A) == uid
    assert encode("voice", uid, style, caller=A) == public  # derived: the same on every replica
    assert decode("voice", public, caller=B) is None  # another tenant over the same Gradium key
    assert decode("voice", public, caller=Caller("other_key", "a")) is None
    assert decode("pronunciation", public, caller=A) is None  # kinds do not mix
    if style == "b64" and len(uid) == 16:
        assert len(public) == 20
    if style == "uuid" and len(uid) == 16:
        uuid.UUID(public)


def test_tampering_and_garbage_do_not_open() -> None:
    public = encode("voice", "emuClone00000001", caller=FORWARD)
    flipped = public[:-1] + ("A" if public[-1] != "A" else "B")
    for value in (flipped, "", "A" * 20, "not base64 !!", "0" * 400, str(uuid.uuid4())):
        assert decode("voice", value, caller=FORWARD) is None


def test_caller_from_context_and_markers() -> None:
    token = CALLER.set(A)
    try:
        public = encode("voice", "emuClone00000001")
        assert decode("voice", public) == "emuClone00000001"
        assert tenant_marker() == tenant_marker(A) != tenant_marker(B)
    finally:
        CALLER.reset(token)
    assert tenant_marker(FORWARD) is None
    with pytest.raises(GatewayError):
        encode("voice", "x")  # nobody authenticated
