"""User-facing configuration: an optional YAML file plus environment variables.

Everything has a default that runs out of the box: no file and no Gradium key means the gateway
serves on 127.0.0.1:8080 against the built-in emulator.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.traffic.settings import LegacyVendor, ShadowSettings, TrafficSettings, default_legacy
from gateway.yamlfile import ConfigFileError, load_yaml


def _package_mappings() -> Path:
    """`mappings/` of a checkout (editable install, tests), else the copy a wheel ships in the package."""
    here = Path(__file__).resolve().parent
    source = here.parent / "mappings"
    return source if (source / "elevenlabs.yaml").is_file() else here / "_mappings"


PACKAGE_MAPPINGS = _package_mappings()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GradiumSettings(_Strict):
    base_url: str | None = Field(
        default=None,
        description="Gradium REST base, e.g. https://api.gradium.ai/api. Unset: the built-in emulator.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="Gradium key used for managed tenants that do not carry their own."
    )
    connect_timeout_s: float = Field(default=10.0, gt=0)
    ready_timeout_s: float = Field(default=15.0, gt=0, description="Wait for Gradium's `ready` at most this long.")
    message_timeout_s: float = Field(
        default=30.0, gt=0, description="On HTTP routes, wait at most this long for each next Gradium message."
    )

    @field_validator("base_url")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class ManagedKey(_Strict):
    """A gateway key (stored as its SHA-256) that maps a caller to a tenant."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key the client sends")
    tenant: str
    allow_overrides: bool = Field(default=False, description="QA key: X-Gateway-Target / X-Gateway-Shadow honoured")


class Tenant(_Strict):
    gradium_api_key: SecretStr | None = None
    legacy_keys: dict[str, SecretStr] = Field(default_factory=dict, description="vendor -> key for passthrough")
    shadow_keys: dict[str, SecretStr] = Field(
        default_factory=dict, description="side (gradium or a vendor) -> key used only by shadow legs"
    )
    fallthrough: Literal["legacy"] | None = Field(
        default=None,
        description="legacy: paths under a provider prefix that no mapping serves go to the vendor (passthrough)",
    )


class AuthSettings(_Strict):
    mode: Literal["forward", "managed"] = Field(
        default="forward",
        description=(
            "forward: the client puts its Gradium key where the legacy key went and the gateway forwards it. "
            "managed: clients present gateway keys (keys[]) that map to a tenant's upstream key."
        ),
    )
    keys: list[ManagedKey] = Field(default_factory=list)
    tenants: dict[str, Tenant] = Field(default_factory=dict)
    token_ttl_s: int = Field(default=900, gt=0, le=86400, description="Lifetime of gateway-minted tokens.")
    token_secret: SecretStr | None = Field(
        default=None, min_length=32,
        description=(
            "Secret signing gateway tokens (GATEWAY_TOKEN_SECRET), the same on every worker and replica. "
            "Unset: a random one per process, so tokens die on restart and work only on the worker that minted them."
        ),
    )
    max_used_tokens: int = Field(
        default=100_000, gt=0, description="Bound of the in-memory set of used single-use tokens."
    )

    @model_validator(mode="after")
    def _tenants_exist(self) -> AuthSettings:
        for k in self.keys:
            if k.tenant not in self.tenants:
                raise ValueError(f"key for tenant {k.tenant!r}: no such tenant in auth.tenants")
        return self

    def tenant_for(self, presented: str) -> str | None:
        return self.tenant_of_digest(hashlib.sha256(presented.encode()).hexdigest())

    def tenant_of_digest(self, digest: str) -> str | None:
        """The tenant of the key whose SHA-256 (hex) is `digest`."""
        for k in self.keys:
            if k.sha256 == digest:
                return k.tenant
        return None


class VoiceSettings(_Strict):
    """Per-provider voice overrides and fallbacks, merged over the mapping's default tables."""

    map: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="provider -> {legacy voice id -> Gradium voice id}"
    )
    fallback: dict[str, str] = Field(
        default_factory=dict, description="provider -> Gradium voice used for unknown ids (else an error)"
    )


class Limits(_Strict):
    max_body_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_ws_message_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    max_text_chars: int = Field(default=10_000, gt=0)


class FetchSettings(_Strict):
    """Remote audio the gateway may download for a caller (Deepgram `{"url": ...}`). Off by default."""

    allow: list[str] = Field(
        default_factory=list,
        description="URL prefixes the gateway may fetch, e.g. https://media.example.com/ (empty: never fetch)",
    )
    timeout_s: float = Field(default=30.0, gt=0, description="connect + download time limit")
    private_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Host names of allowed prefixes that may resolve to loopback, link-local or private addresses "
            "(an allowed prefix whose host is such an IP literal needs no entry here)"
        ),
    )

    @field_validator("allow")
    @classmethod
    def _http_only(cls, v: list[str]) -> list[str]:
        for prefix in v:
            if not prefix.startswith(("http://", "https://")):
                raise ValueError(f"{prefix!r}: must start with http:// or https://")
        return v

    def allows(self, url: str) -> bool:
        """`url` (already normalised: dot segments resolved, host lower-cased, default port dropped, as
        `gateway.dialects.fetch.normalise` does) starts with an allowed prefix normalised the same way; a
        prefix without a trailing slash still ends at a path boundary (no `host.evil.com` match)."""
        from yarl import URL

        for raw in self.allow:
            p = str(URL(raw))
            if url.startswith(p) and (p.endswith("/") or url[len(p):][:1] in ("", "/", "?")):
                return True
        return False


class AdminSettings(_Strict):
    """Operator-only pages (`GET /_gateway/shadow`)."""

    token_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$",
        description="hex SHA-256 of the admin Bearer token; unset: admin pages answer 404",
    )
class StateSettings(_Strict):
    """State shared by every worker and replica (single-use tokens, counters). Unset: in process memory."""

    redis_url: str | None = Field(
        default=None, description="redis://host:6379/0 (GATEWAY_REDIS_URL); needs the `redis` extra."
    )
    key_prefix: str = Field(default="gw:", description="Prefix of every Redis key the gateway writes.")
    timeout_s: float = Field(default=0.5, gt=0, description="Deadline of one Redis command.")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v


class Settings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tls_port: int = Field(default=8443, ge=0, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    mappings_dir: Path = PACKAGE_MAPPINGS
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v  # GATEWAY_LOG_LEVEL=DEBUG as well as debug
    gradium: GradiumSettings = Field(default_factory=GradiumSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    voices: VoiceSettings = Field(default_factory=VoiceSettings)
    limits: Limits = Field(default_factory=Limits)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    drain_s: float = Field(
        default=20.0, ge=0, le=3600,
        description="On SIGTERM: how long running requests and sockets may take to finish (GATEWAY_DRAIN_S).",
    )
    workers: int | None = Field(
        default=None, ge=1, le=256, description="Processes sharing the listening sockets (default: CPU cores)."
    )
    legacy: dict[str, LegacyVendor] = Field(default_factory=default_legacy, description="passthrough targets")
    traffic: TrafficSettings = Field(default_factory=TrafficSettings)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    _source: object = PrivateAttr(default=None)  # the YAML document, for file:line in later checks

    @field_validator("legacy", mode="before")
    @classmethod
    def _legacy_defaults(cls, v: object) -> object:
        """A vendor the user does not name keeps its real base URL."""
        if not isinstance(v, dict):
            return v
        merged: dict[str, object] = {k: {"base_url": u.base_url} for k, u in default_legacy().items()}
        for name, entry in v.items():
            base = merged.get(name)
            merged[name] = {**base, **entry} if isinstance(base, dict) and isinstance(entry, dict) else entry
        return merged

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        for p in (self.tls_cert, self.tls_key):
            if p is not None and not p.is_file():
                raise ValueError(f"TLS file not found: {p}")
        return self

    @property
    def uses_emulator(self) -> bool:
        """No Gradium URL and no Gradium key configured: run against the built-in emulator."""
        return self.gradium.base_url is None and self.gradium.api_key is None

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None


# Environment variable -> dotted settings path. Environment wins over the file.
ENV_VARS: dict[str, tuple[str, ...]] = {
    "GATEWAY_HOST": ("host",),
    "GATEWAY_PORT": ("port",),
    "GATEWAY_TLS_PORT": ("tls_port",),
    "GATEWAY_TLS_CERT": ("tls_cert",),
    "GATEWAY_TLS_KEY": ("tls_key",),
    "GATEWAY_MAPPINGS": ("mappings_dir",),
    "GATEWAY_LOG_LEVEL": ("log_level",),
    "GATEWAY_DRAIN_S": ("drain_s",),
    "GATEWAY_AUTH_MODE": ("auth", "mode"),
    "GATEWAY_TOKEN_SECRET": ("auth", "token_secret"),
    "GATEWAY_WORKERS": ("workers",),
    "GATEWAY_REDIS_URL": ("state", "redis_url"),
    "GRADIUM_BASE_URL": ("gradium", "base_url"),
    "GRADIUM_API_KEY": ("gradium", "api_key"),
    "GATEWAY_TRAFFIC_FORCE": ("traffic", "force"),  # the rollback switch
}


def load_settings(path: Path | None = None, env: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Read the optional YAML file, then environment variables, then explicit overrides (CLI flags)."""
    env = dict(os.environ) if env is None else env
    if path is None and env.get("GATEWAY_CONFIG"):
        path = Path(env["GATEWAY_CONFIG"])
    if path is not None:
        doc = load_yaml(path)
        if doc.data is not None and not isinstance(doc.data, dict):
            raise ConfigFileError([f"{path}:1: (top level): must be a mapping"])
        data = dict(doc.data or {})
    else:
        doc = None
        data = {}
    origin: dict[tuple[str, ...], str] = {}  # settings path -> the variable or flag that set it
    for var, dotted in ENV_VARS.items():
        if env.get(var):
            target = data
            for part in dotted[:-1]:
                target = target.setdefault(part, {})
            target[dotted[-1]] = env[var]
            origin[dotted] = var
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
            origin[(key,)] = "--" + key.replace("_", "-")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            source = next((name for path, name in origin.items() if loc[: len(path)] == path), None)
            if source is not None:  # name what the user typed, never the value (it may be a secret)
                problems.append(f"{source}: {err['msg']}")
            elif doc is not None:
                problems.append(f"{doc.path}:{doc.line_of(loc)}: {'.'.join(loc) or '(top level)'}: {err['msg']}")
            else:
                problems.append(f"{'.'.join(loc) or '(top level)'}: {err['msg']}")
        raise ConfigFileError(problems) from exc
    if doc is not None:
        doc.data = data
        settings._source = doc  # for file:line in later checks (gateway.traffic.checks)
    return settings
