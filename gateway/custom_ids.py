"""Ids of the caller's own voices and dictionaries, derived from Gradium's, never remembered.

A custom voice or pronunciation dictionary lives in Gradium under a Gradium uid. The id a client sees
is that uid sealed for the caller: XORed with a keystream and followed by a MAC, both keyed by the
caller's identity (its upstream Gradium key and, in managed mode, its tenant name). So every replica
derives the same id from configuration alone, and only the same caller can turn it back into the
uid: another tenant's id (even over the same Gradium key) does not open, and the raw Gradium uid is
never shown. Catalogue voices keep their public Gradium ids.

The identity is set per request (`CALLER`, a context variable) when the caller's key is resolved
(`Authenticator.upstream_key`), before any param is read.

Styles: `b64` (url-safe base64: a 16-character uid gives 20 characters, like an ElevenLabs id) and
`uuid` (a 16-character uid gives a UUID, like a Cartesia id; longer uids fall back to `b64`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from gateway.errors import GatewayError


@dataclass(slots=True)  # not frozen: built for every request, and never changed once set
class Caller:
    upstream_key: str
    tenant: str | None = None  # managed mode: the tenant the caller's key (or token) belongs to


CALLER: ContextVar[Caller | None] = ContextVar("gateway_caller", default=None)
_COMPACT, _TEXT = b"c", b"t"  # a 16-char base64url uid packed into 12 bytes, or its UTF-8 bytes


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def current_caller() -> Caller:
    caller = CALLER.get()
    if caller is None:
        raise GatewayError("unauthorized", "Missing API key")
    return caller


def _secret(caller: Caller) -> bytes:
    return hashlib.sha256(b"gradium-gateway/custom-ids\0" + caller.upstream_key.encode() + b"\0"
                          + (caller.tenant or "").encode()).digest()


def _keystream(secret: bytes, kind: str, n: int) -> bytes:
    out, block = b"", 0
    while len(out) < n:
        out += hmac.new(secret, f"{kind}:stream:{block}".encode(), hashlib.sha256).digest()
        block += 1
    return out[:n]


def _seal(secret: bytes, kind: str, mode: bytes, raw: bytes, tag_len: int) -> bytes:
    ct = bytes(a ^ b for a, b in zip(raw, _keystream(secret, kind, len(raw)), strict=True))
    return ct + hmac.new(secret, kind.encode() + mode + ct, hashlib.sha256).digest()[:tag_len]


def _open(secret: bytes, kind: str, sealed: bytes, tag_len: int) -> str | None:
    ct, tag = sealed[:-tag_len], sealed[-tag_len:]
    if not ct:
        return None
    raw = bytes(a ^ b for a, b in zip(ct, _keystream(secret, kind, len(ct)), strict=True))
    for mode in (_COMPACT, _TEXT):
        if hmac.compare_digest(hmac.new(secret, kind.encode() + mode + ct, hashlib.sha256).digest()[:tag_len], tag):
            if mode == _COMPACT:
                return _b64e(raw)
            try:
                return raw.decode()
            except UnicodeDecodeError:
                return None
    return None


def _compact(uid: str) -> bytes | None:
    raw = _b64d(uid) if len(uid) == 16 else None
    return raw if raw is not None and _b64e(raw) == uid else None


def encode(kind: str, uid: str, style: str = "b64", caller: Caller | None = None) -> str:
    """The id the caller sees for its Gradium object `uid` (`kind`: voice, pronunciation...)."""
    secret = _secret(caller or current_caller())
    raw = _compact(uid)
    if raw is not None and style == "uuid":
        return str(uuid.UUID(bytes=_seal(secret, kind, _COMPACT, raw, 4)))
    if raw is not None:
        return _b64e(_seal(secret, kind, _COMPACT, raw, 3))
    return _b64e(_seal(secret, kind, _TEXT, uid.encode(), 3))


def decode(kind: str, value: str, caller: Caller | None = None) -> str | None:
    """The Gradium uid behind an id from `encode` for this caller; None when it is not one."""
    caller = caller or CALLER.get()
    if caller is None or not value or len(value) > 200:
        return None
    return _decode(kind, value, _secret(caller))


@functools.lru_cache(maxsize=4096)
def _decode(kind: str, value: str, secret: bytes) -> str | None:
    """Pure, and asked again for every request that names the same voice (the split's own-object look,
    then the voice table): remembered, as three HMACs a time cost more than the rest of the split. Keyed
    by the derived secret, so the cache holds no caller's key."""
    try:
        return _open(secret, kind, uuid.UUID(value).bytes, 4)
    except ValueError:
        pass
    sealed = _b64d(value)
    return _open(secret, kind, sealed, 3) if sealed and len(sealed) > 3 else None


def tenant_marker(caller: Caller | None = None) -> str | None:
    """A short, stable mark of the caller's tenant (managed mode), stored with the Gradium objects it
    creates so a listing over a Gradium key that several tenants share shows each only its own."""
    caller = caller or current_caller()
    if caller.tenant is None:
        return None
    return hmac.new(_secret(caller), b"tenant-marker", hashlib.sha256).hexdigest()[:10]
