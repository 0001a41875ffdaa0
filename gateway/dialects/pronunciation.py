"""The `pronunciation` builtin: the caller's pronunciation dictionaries over Gradium's
`/api/pronunciations/` (rules `{original, rewrite, case_sensitive}`, applied by Gradium's TTS
WebSocket when a setup names the dictionary in `pronunciation_id`).

Option `action`: create | get | list | update | delete | add_rules | remove_rules | set_rules | download.
Option `rule`: the provider's rule shape, {original, rewrite, case_sensitive: field names; type_field and
type: the only rule type Gradium can apply (text rewrites); case_default}. Option `file_field`: create
from a PLS lexicon upload (W3C Pronunciation Lexicon: `<lexeme><grapheme>..</grapheme><alias>..</alias>`).
Params (by name): dictionary_id, name, description, language, rules, rule_strings, archived, page_size,
after (an id cursor). Templates: `item` and `rules` (`$dictionary`: id, name, description, language,
rules [{original, rewrite, case_sensitive}], version_id, rules_num, created_unix, created_at), `list`
(`$items`, `$has_more`, `$next_cursor`), `deleted`. A version is the dictionary's current rule set:
its id is a digest of the rules, so every replica reports the same one; TTS always uses the latest.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

import orjson
from aiohttp import web

from gateway import custom_ids
from gateway.dialects.builtins import builtin
from gateway.dialects.common import RequestContext, render_event, request_id_headers
from gateway.dialects.gradium_library import call, is_mine, marked, unmarked
from gateway.dialects.voice_clone import caller_key, reply
from gateway.errors import GatewayError
from gateway.mapping.params import RequestData

MAX_PLS_BYTES = 1024 * 1024
PLS_NS = "{http://www.w3.org/2005/01/pronunciation-lexicon}"


def _unix(iso: Any) -> int:
    try:
        return int(datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def dictionary_item(d: dict[str, Any], style: str) -> dict[str, Any]:
    rules = [r for r in d.get("rules") or [] if isinstance(r, dict)]
    canon = orjson.dumps([[r.get("original"), r.get("rewrite"), bool(r.get("case_sensitive"))] for r in rules])
    public = custom_ids.encode("pronunciation", str(d["uid"]), style)
    return {
        "id": public,
        "gradium": d["uid"],
        "name": unmarked(str(d.get("name") or ""))[0],
        "description": d.get("description") or None,
        "language": d.get("language"),
        "rules": [{"original": r.get("original"), "rewrite": r.get("rewrite"),
                   "case_sensitive": bool(r.get("case_sensitive"))} for r in rules],
        "version_id": hashlib.sha256(public.encode() + canon).hexdigest()[:20],
        "rules_num": len(rules),
        "created_unix": _unix(d.get("created_at")),
        "created_at": d.get("created_at"),
    }


def _rules_in(value: Any, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The provider's rules -> Gradium's."""
    if not isinstance(value, list):
        raise GatewayError("invalid_request", "rules must be a list", "rules")
    f_orig, f_rew = spec.get("original", "original"), spec.get("rewrite", "rewrite")
    f_case, type_field = spec.get("case_sensitive", "case_sensitive"), spec.get("type_field")
    out = []
    for rule in value:
        if not isinstance(rule, dict):
            raise GatewayError("invalid_request", "every rule must be an object", "rules")
        if type_field and rule.get(type_field, spec.get("type")) != spec.get("type"):
            raise GatewayError("invalid_request", f"Only {spec.get('type')} rules are supported: Gradium rewrites "
                               f"text, it does not take phonemes ({type_field}={rule.get(type_field)!r})", "rules")
        original, rewrite = rule.get(f_orig), rule.get(f_rew)
        if not isinstance(original, str) or not original.strip() or not isinstance(rewrite, str):
            raise GatewayError("invalid_request", f"every rule needs a non-empty {f_orig} and a {f_rew}", "rules")
        case = rule.get(f_case)
        out.append({"original": original, "rewrite": rewrite,
                    "case_sensitive": bool(spec.get("case_default", False) if case is None else case)})
    return out


def parse_pls(data: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """A PLS lexicon -> (Gradium rules, base language)."""
    try:
        root = ET.fromstring(data)  # no DTDs or external entities are resolved by ElementTree
    except ET.ParseError as exc:
        raise GatewayError("invalid_request", f"The file is not a PLS lexicon: {exc}", "file") from None
    if root.tag not in (f"{PLS_NS}lexicon", "lexicon"):
        raise GatewayError("invalid_request", "The file is not a PLS lexicon (no <lexicon> root)", "file")
    ns = PLS_NS if root.tag.startswith("{") else ""
    rules = []
    for lexeme in root.iter(f"{ns}lexeme"):
        alias = lexeme.find(f"{ns}alias")
        if alias is None or not (alias.text or "").strip():
            raise GatewayError("invalid_request", "Only <alias> lexemes are supported: Gradium rewrites text, it "
                               "does not take phonemes", "file")
        for grapheme in lexeme.iter(f"{ns}grapheme"):
            if (grapheme.text or "").strip():
                rules.append({"original": grapheme.text.strip(), "rewrite": alias.text.strip(),
                              "case_sensitive": True})
    lang = root.get("{http://www.w3.org/XML/1998/namespace}lang")
    return rules, lang.split("-")[0].lower() if lang else None


def to_pls(item: dict[str, Any]) -> bytes:
    lexemes = "".join(f"  <lexeme><grapheme>{escape(r['original'])}</grapheme><alias>{escape(r['rewrite'])}"
                      f"</alias></lexeme>\n" for r in item["rules"])
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<lexicon version="1.0" '
            f'xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="ipa" '
            f'xml:lang="{escape(item.get("language") or "en")}">\n{lexemes}</lexicon>\n').encode()


def _pls_upload(req: RequestData, field: str) -> bytes:
    part = req.form.get(field) if req.form else None
    if part is None or isinstance(part, str):
        raise GatewayError("invalid_request", f"{field}: a PLS lexicon file is required", field)
    handle = part.file
    data = handle.read(MAX_PLS_BYTES + 1)
    if len(data) > MAX_PLS_BYTES:
        raise GatewayError("payload_too_large", "The lexicon file is larger than 1 MB", field)
    if not data.strip():
        raise GatewayError("invalid_request", "The lexicon file is empty", field)
    return data


async def _own(request: web.Request, key: str, public_id: Any) -> dict[str, Any]:
    uid = custom_ids.decode("pronunciation", str(public_id or ""))
    missing = GatewayError("not_found", f"Pronunciation dictionary {public_id} was not found", "dictionary_id")
    if uid is None:
        raise missing
    try:
        d = await call(request, "GET", f"pronunciations/{uid}", key)
    except GatewayError as err:
        raise (missing if err.kind == "not_found" else err) from None
    if not isinstance(d, dict) or not is_mine(str(d.get("name") or "")):
        raise missing
    return {**d, "uid": uid}


async def _list(request: web.Request, key: str, style: str) -> list[dict[str, Any]]:
    data = await call(request, "GET", "pronunciations/", key, params={"limit": "1000", "offset": "0"})
    found = data.get("dictionaries") if isinstance(data, dict) else None
    return [dictionary_item(d, style) for d in found or [] if isinstance(d, dict) and d.get("uid")
            and is_mine(str(d.get("name") or ""))]


@builtin("pronunciation")
async def pronunciation(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    opts = ctx.route.spec.builtin_options
    action, style = str(opts.get("action")), str(opts.get("id_style", "b64"))
    rule_spec = dict(opts.get("rule") or {})
    key = await caller_key(request, ctx, req)
    p = ctx.route.read_params(req)

    def answer(event: str, d: dict[str, Any], status: int = 200) -> web.Response:
        return reply(ctx, p, event, {"dictionary": dictionary_item(d, style)}, status)

    if action == "create":
        language = p.get("language")
        if opts.get("file_field"):
            rules, pls_lang = parse_pls(_pls_upload(req, str(opts["file_field"])))
            language = language or pls_lang
        else:
            rules = _rules_in(p.get("rules") or [], rule_spec)
        name = str(p.get("name") or "").strip()
        if not name:
            raise GatewayError("invalid_request", "name is required", "name")
        if any(d["name"].casefold() == name.casefold() for d in await _list(request, key, style)):
            raise GatewayError("conflict", f"A pronunciation dictionary named {name!r} already exists", "name")
        body = {"name": marked(name), "language": str(language or "en"), "rules": rules,
                "description": str(p.get("description") or "")}
        return answer("item", await call(request, "POST", "pronunciations/", key, json=body),
                      int(opts.get("status", 200)))
    if action == "list":
        items = await _list(request, key, style)
        after = p.get("after")
        if after:
            ids = [i["id"] for i in items]
            if after not in ids:
                raise GatewayError("invalid_request", f"{after!r} is not an id from this list", "cursor")
            items = items[ids.index(after) + 1:]
        size = int(p.get("page_size") or 30)
        page, more = items[:size], len(items) > size
        fields = {"items": [render_event(ctx.route, ctx.scope(p), "item", {"dictionary": i}) for i in page],
                  "has_more": more, "next_cursor": page[-1]["id"] if more and page else None}
        return reply(ctx, p, "list", fields)
    d = await _own(request, key, p.get("dictionary_id"))
    uid = d["uid"]
    if action == "get":
        return answer("item", d)
    if action == "download":
        return web.Response(body=to_pls(dictionary_item(d, style)), content_type="application/pls+xml",
                            headers=request_id_headers(ctx))
    if action == "delete" or (action == "update" and p.get("archived") is True):
        await call(request, "DELETE", f"pronunciations/{uid}", key)
        return answer("deleted" if "deleted" in ctx.route.render else "item", d)
    rules = list(dictionary_item(d, style)["rules"])
    changes: dict[str, Any] = {}
    if action == "add_rules":
        new = _rules_in(p.get("rules") or [], rule_spec)
        replaced = {r["original"] for r in new}  # a rule for the same text replaces the old one
        changes["rules"] = [r for r in rules if r["original"] not in replaced] + new
    elif action == "remove_rules":
        gone = p.get("rule_strings")
        if not isinstance(gone, list):
            raise GatewayError("invalid_request", "rule_strings must be a list", "rule_strings")
        changes["rules"] = [r for r in rules if r["original"] not in gone]
    elif action in ("set_rules", "update"):
        if p.get("rules") is not None:
            changes["rules"] = _rules_in(p["rules"], rule_spec)
        if p.get("name"):
            changes["name"] = marked(str(p["name"]).strip())
    else:
        raise GatewayError("internal", f"unknown pronunciation action {action!r}")
    updated = await call(request, "PUT", f"pronunciations/{uid}", key, json=changes) if changes else d
    return answer("rules" if action != "update" else "item", {**updated, "uid": uid})
