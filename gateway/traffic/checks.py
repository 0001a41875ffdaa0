"""Load-time checks that need both the configuration and the mappings (specs/traffic.md §1).

Each problem names the file, line and field when the settings came from a file.
"""

from __future__ import annotations

from typing import Any

import structlog

from gateway.traffic.policy import gradium_possible, legacy_possible
from gateway.traffic.settings import Match, ShadowRule, SplitRule
from gateway.yamlfile import ConfigFileError, YamlDoc

log = structlog.get_logger("gateway")
Loc = tuple[str | int, ...]


def _sends_legacy(rule: SplitRule) -> bool:
    if rule.serve is not None:
        return rule.serve == "legacy"
    w = [rule.weights.gradium] if rule.weights is not None else []
    return any(x < 100 for x in [*w, *(s.gradium for s in rule.ramp)])


def _names(match: Match, field: str, every: list[str]) -> list[str]:
    return match.names(field) or every


def problems(settings: Any, mappings: dict[str, Any]) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    providers = sorted(p for p, m in mappings.items() if getattr(m, "legacy", None) is not None)
    routes = {name for m in mappings.values() for name in m.routes}
    auth = settings.auth
    managed = auth.mode == "managed"
    tenants = sorted(auth.tenants)

    def check_match(match: Match, loc: Loc) -> None:
        for p in match.names("provider"):
            if p not in mappings:
                out.append(((*loc, "match", "provider"), f"unknown provider {p!r}"))
        for r in match.names("route"):
            if r not in routes:
                out.append(((*loc, "match", "route"), f"unknown route {r!r} (`gradium-gateway check` lists them)"))

    def need_key(match: Match, loc: Loc, side_of: str) -> None:
        if not managed:
            return
        for t in _names(match, "tenant", tenants):
            tenant = auth.tenants.get(t)
            if tenant is None:
                out.append(((*loc, "match", "tenant"), f"unknown tenant {t!r}"))
                continue
            for p in _names(match, "provider", providers):
                if side_of == "legacy" and p not in tenant.legacy_keys:
                    out.append((loc, f"sends {p} traffic of tenant {t!r} to the vendor: "
                                     f"auth.tenants.{t}.legacy_keys.{p} is missing"))

    for t in tenants:
        if auth.tenants[t].fallthrough and not auth.tenants[t].legacy_keys:
            out.append((("auth", "tenants", t, "fallthrough"), "needs at least one vendor key in legacy_keys"))
    traffic = settings.traffic
    for i, rule in enumerate(traffic.rules):
        loc: Loc = ("traffic", "rules", i)
        check_match(rule.match, loc)
        if _sends_legacy(rule):
            need_key(rule.match, (*loc, "serve" if rule.serve else "weights"), "legacy")
    if traffic.default.gradium < 100 or traffic.force == "legacy":
        need_key(Match(), ("traffic", "force" if traffic.force == "legacy" else "default"), "legacy")
    shadow = settings.shadow
    for i, srule in enumerate(shadow.rules):
        loc = ("shadow", "rules", i)
        check_match(srule.match, loc)
        if srule.rate > 0 and not shadow.enabled:
            log.warning("config.shadow_disabled", field=f"shadow.rules.{i}.rate",
                        message="rate > 0 but shadow.enabled is false: nothing is shadowed")
        if srule.rate > 0 and shadow.enabled and managed and not shadow.allow_shared_keys:
            towards = shadow.shadow_target
            if towards == "other":  # a Gradium shadow needs legacy primaries, a vendor shadow Gradium ones
                sides = [s for s, possible in (("gradium", legacy_possible(traffic)),
                                               ("legacy", gradium_possible(traffic))) if possible]
                towards = "other" if len(sides) == 2 else sides[0] if sides else "none"
            out.extend(_shadow_keys(srule, (*loc, "rate"), auth, tenants, providers, towards))
    return out


def _shadow_keys(rule: ShadowRule, loc: Loc, auth: Any, tenants: list[str], providers: list[str],
                 towards: str) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    for t in _names(rule.match, "tenant", tenants):
        tenant = auth.tenants.get(t)
        if tenant is None:
            continue
        sides = {"gradium"} if towards == "gradium" else set()
        if towards in ("legacy", "other"):
            sides |= set(_names(rule.match, "provider", providers))
        if towards == "other":
            sides.add("gradium")
        for side in sorted(sides):
            if side not in tenant.shadow_keys:
                out.append((loc, f"shadows tenant {t!r} towards {side}: auth.tenants.{t}.shadow_keys.{side} is "
                                 "missing (or set shadow.allow_shared_keys: true)"))
    return out


def check_settings(settings: Any, mappings: dict[str, Any]) -> None:
    found = problems(settings, mappings)
    if not found:
        return
    doc: YamlDoc | None = getattr(settings, "_source", None)
    lines = []
    for loc, msg in found:
        dotted = ".".join(str(p) for p in loc)
        where = f"{doc.path}:{doc.line_of(loc)}" if doc is not None else "settings"
        lines.append(f"{where}: {dotted}: {msg}")
    raise ConfigFileError(lines)
