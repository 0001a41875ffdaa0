"""User configuration of the migration traffic: legacy vendors, the split, shadowing (specs/traffic.md §1).

Nothing here costs money by default: no rule sends traffic to a vendor (`default: {gradium: 100}`), the
shadow is off and every shadow rate is 0.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

Target = Literal["gradium", "legacy"]
Kind = Literal["tts", "stt"]
Transport = Literal["rest", "ws"]
StickySource = Literal["header", "native", "credential", "request"]

# The real vendors; a user's `legacy:` section is merged over these per vendor.
VENDOR_URLS = {
    "elevenlabs": "https://api.elevenlabs.io",
    "cartesia": "https://api.cartesia.ai",
    "deepgram": "https://api.deepgram.com",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LegacyVendor(_Strict):
    base_url: str = Field(description="REST base of the vendor; a path prefix is kept (`https://x/elevenlabs`)")
    ws_base_url: str | None = Field(default=None, description="default: base_url with https -> wss, http -> ws")
    ca_file: str | None = Field(default=None, description="extra CA bundle to trust (tests, private vendors)")
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=300.0, gt=0, description="longest silence from the vendor mid-answer")
    forward_client_ip: bool = Field(default=False, description="send Forwarded/X-Forwarded-For to the vendor")
    api_key: SecretStr | None = Field(
        default=None,
        description="forward mode only: the vendor key to use (unset: the client's own credential is forwarded)",
    )

    @field_validator("base_url", "ws_base_url")
    @classmethod
    def _url(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        if not v.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("must start with http://, https://, ws:// or wss://")
        if info.field_name == "base_url" and "@" in urlsplit(v).netloc:
            # the REST relay (relay.py) sends no userinfo, which aiohttp made Basic auth: refused at load rather than a
            # 500 per request. A `ws_base_url` of its own still may (its sockets keep aiohttp)
            raise ValueError("must not carry user:password@ (vendor credentials go in legacy_keys or api_key)")
        return v.rstrip("/")

    @property
    def ws_url(self) -> str:
        if self.ws_base_url:
            return self.ws_base_url
        return "ws" + self.base_url[4:] if self.base_url.startswith("http") else self.base_url


def default_legacy() -> dict[str, LegacyVendor]:
    return {name: LegacyVendor(base_url=url) for name, url in VENDOR_URLS.items()}


class Match(_Strict):
    """Which units a rule applies to; an absent field matches everything."""

    tenant: str | list[str] | None = None
    provider: str | list[str] | None = None
    route: str | list[str] | None = None
    kind: Kind | None = None
    transport: Transport | None = None

    def names(self, field: str) -> list[str]:
        v = getattr(self, field)
        return [] if v is None else [v] if isinstance(v, str) else list(v)


class Weights(_Strict):
    gradium: float = Field(ge=0, le=100, description="percent of units served by Gradium; legacy = 100 - gradium")

    @field_validator("gradium")
    @classmethod
    def _resolution(cls, v: float) -> float:
        if abs(v * 100 - round(v * 100)) > 1e-6:
            raise ValueError("weights have a 0.01 % resolution")
        return v


class RampStep(_Strict):
    at: datetime
    gradium: float = Field(ge=0, le=100)

    @field_validator("at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("ramp times need a time zone (e.g. 2026-07-08T09:00Z)")
        return v


class SplitRule(_Strict):
    match: Match = Field(default_factory=Match)
    weights: Weights | None = None
    ramp: list[RampStep] = Field(default_factory=list)
    serve: Target | None = Field(default=None, description="serve every matching unit from this side")
    sticky_by: list[StickySource] = Field(default_factory=lambda: ["header", "native", "credential"])
    failover: Literal["none", "connect"] | None = Field(
        default=None, description="default: none for TTS, connect for STT"
    )
    failover_to_zero_weight: bool = False
    salt: str | None = Field(default=None, description="own salt: assignment independent of other rules")

    @model_validator(mode="after")
    def _one_choice(self) -> SplitRule:
        if self.serve is not None and (self.weights is not None or self.ramp):
            raise ValueError("a rule has `serve` or `weights`/`ramp`, not both")
        if self.serve is None and self.weights is None and not self.ramp:
            raise ValueError("a rule needs `weights`, `ramp` or `serve`")
        for a, b in zip(self.ramp, self.ramp[1:], strict=False):
            if b.at <= a.at:
                raise ValueError("ramp times must strictly increase")
        return self


class TrafficSettings(_Strict):
    salt: str = Field(default="gradium-gateway", description="changing it reshuffles every assignment")
    session_headers: list[str] = Field(default_factory=lambda: ["X-Gateway-Session", "X-Conversation-Id"])
    session_query: str = Field(default="gw_session", description="stripped before any upstream")
    native_extra_key: str = Field(default="conversation_id", description="Deepgram `extra=<key>:<value>` sticky key")
    expose_target_header: bool = True
    force: Target | None = Field(default=None, description="every new unit to this side (env GATEWAY_TRAFFIC_FORCE)")
    default: Weights = Field(default_factory=lambda: Weights(gradium=100))
    rules: list[SplitRule] = Field(default_factory=list)


class Budget(_Strict):
    tts_chars_per_day: int | None = Field(default=None, ge=0)
    stt_seconds_per_day: float | None = Field(default=None, ge=0)
    max_concurrent: int = Field(default=2, ge=1)


class GlobalBudget(_Strict):
    tts_chars_per_day: int | None = Field(default=None, ge=0)
    stt_seconds_per_day: float | None = Field(default=None, ge=0)
    max_concurrent: int = Field(default=8, ge=1)


class ShadowQueue(_Strict):
    max_frames: int = Field(default=512, ge=1)
    max_bytes: int = Field(default=2 * 1024 * 1024, ge=1)


class ShadowRule(_Strict):
    match: Match = Field(default_factory=Match)
    rate: float = Field(default=0.0, ge=0, le=1)
    sample_by: Literal["unit", "conversation"] = "unit"
    noise_rate: float = Field(default=0.0, ge=0, le=1, description="share of shadowed units that also get a "
                              "same-side copy (pair_kind noise): the floor verdicts are measured against")
    noise_target: Literal["primary", "candidate"] = Field(
        default="primary", description="the side copied: the primary's own (primary vs copy), or the candidate's"
    )
    budget: Budget = Field(default_factory=Budget)
    queue: ShadowQueue = Field(default_factory=ShadowQueue)
    drain_timeout_s: float = Field(default=10.0, gt=0)
    max_unit_s: float = Field(default=900.0, gt=0)


class Cooldown(_Strict):
    throttles: int = Field(default=3, ge=1)
    window_s: float = Field(default=60.0, gt=0)
    pause_s: float = Field(default=300.0, gt=0)


class ShadowStore(_Strict):
    kind: Literal["sqlite", "none"] = "sqlite"
    path: str = "./gateway-shadow.db"
    retention_days: int = Field(default=14, ge=1)
    store_text: bool = False


class ShadowSettings(_Strict):
    enabled: bool = False
    respect_privacy_flags: bool = True
    shadow_target: Literal["other", "gradium", "legacy"] = "other"
    allow_shared_keys: bool = Field(default=False, description="shadow legs may use production keys")
    max_body_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    store: ShadowStore = Field(default_factory=ShadowStore)
    sinks: list[Literal["store", "log"]] = Field(default_factory=lambda: ["store", "log"])
    rules: list[ShadowRule] = Field(default_factory=list)
    global_budget: GlobalBudget = Field(default_factory=GlobalBudget)
    vendor_cooldown: Cooldown = Field(default_factory=Cooldown)
