"""Which events a route can render, and the fields each one brings: the contract `render:` keys are
checked against at load time.

A route's events come from its transform (`EventTransform.EVENTS`), from its builtin handler
(`BUILTIN_EVENTS` below: the handlers live in `gateway/dialects/`, which imports the mapping package,
so they are declared here and a test holds the two in step), and from the runtime itself:
- `error`: a failure after an HTTP stream started (SSE, NDJSON), rendered with the error scope;
- `cleared`: the answer to a `do: clear` rule (Deepgram `Clear`);
- the event named by a `do: reply` rule, whose fields are that rule's `fields`.
"""

from __future__ import annotations

from gateway.mapping.schema import Route
from gateway.mapping.transforms.base import Events, EventTransform

_LIST = frozenset({"items", "has_more", "next_page_token", "total_count"})

BUILTIN_EVENTS: dict[str, Events] = {
    "mint_token": {"token": frozenset({"token", "expires_in", "expires_at"})},
    "grant_token": {"token": frozenset({"token", "expires_in", "expires_at"})},
    "catalogue": {"item": frozenset({"item"}), "list": _LIST},
    "cursor_catalogue": {"item": frozenset({"item"}), "list": _LIST},
    "account": {"account": frozenset({"credits"})},
    "projects": {"item": frozenset({"item"}), "list": frozenset({"items"})},
    "pronunciation": {
        "item": frozenset({"dictionary"}),
        "list": frozenset({"items", "has_more", "next_cursor"}),
        "deleted": frozenset({"dictionary"}),
        "rules": frozenset({"dictionary"}),
    },
    "voice_clone": {"created": frozenset({"voice"})},
    "voice_edit": {"item": frozenset({"voice", "item"})},
    "voice_delete": {"deleted": frozenset({"voice_id"})},
    "voice_design": {"previews": frozenset({"previews", "text"})},
    "voice_keep": {"item": frozenset({"voice", "item"})},
}


def route_events(
    route: Route, transform: type[EventTransform] | None, error_params: frozenset[str]
) -> tuple[Events, str]:
    """The events `route` can render with their fields, and who emits them (for error messages)."""
    events: dict[str, frozenset[str]] = {}
    who = []
    if transform is not None:
        events.update(transform.EVENTS)
        who.append(f"transform {transform.name}")
    if route.builtin is not None:
        events.update(BUILTIN_EVENTS.get(route.builtin, {}))
        who.append(f"builtin {route.builtin}")
    if route.gradium is not None and route.http is not None:
        events["error"] = error_params | {"error"}
        who.append("the HTTP runtime (error)")
    if route.websocket is not None:
        extra = []
        for rule in route.websocket.inbound:
            if rule.do == "clear":
                events["cleared"] = frozenset()
                extra.append("cleared")
            elif rule.do == "reply" and rule.event is not None:
                events[rule.event] = events.get(rule.event, frozenset()) | frozenset(rule.fields)
                extra.append(rule.event)
        if extra:
            who.append(f"the socket's rules ({', '.join(sorted(set(extra)))})")
    return events, " and ".join(who) or "nothing"
