"""The split decision, table-tested without sockets (specs/traffic.md §3)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from gateway.traffic.policy import Unit, bucket, decide, legacy_possible
from gateway.traffic.settings import TrafficSettings

NOW = datetime(2026, 7, 10, 12, 0, tzinfo=UTC)


def settings(**kw: object) -> TrafficSettings:
    return TrafficSettings.model_validate(kw)


def unit(**kw: object) -> Unit:
    base: dict[str, object] = {"provider": "elevenlabs", "route": "tts_stream", "kind": "tts", "transport": "rest",
                               "tenant": "acme"}
    base.update(kw)
    return Unit(**base)  # type: ignore[arg-type]


def test_default_is_todays_behaviour() -> None:
    d = decide(settings(), unit(keys={"credential": "k"}), NOW)
    assert d.target == "gradium" and not legacy_possible(settings())


def test_fifty_fifty_over_ten_thousand_keys_within_two_percent() -> None:
    s = settings(default={"gradium": 50})
    n = sum(decide(s, unit(keys={"header": secrets.token_hex(8)}), NOW).target == "gradium" for _ in range(10_000))
    assert abs(n - 5_000) <= 200


@pytest.mark.parametrize("weight", [0.01, 5, 33.33, 99.99])
def test_weights_have_a_hundredth_of_a_percent_resolution(weight: float) -> None:
    s = settings(default={"gradium": weight})
    keys = [f"k{i}" for i in range(20_000)]
    share = sum(decide(s, unit(keys={"header": k}), NOW).target == "gradium" for k in keys) / len(keys) * 100
    assert abs(share - weight) < 1.0
    # exactly the keys whose bucket is below weight*100
    assert all((bucket(s.salt, "acme", k) < round(weight * 100)) ==
               (decide(s, unit(keys={"header": k}), NOW).target == "gradium") for k in keys[:500])


def test_same_session_header_same_target_every_time() -> None:
    s = settings(default={"gradium": 50})
    first = decide(s, unit(keys={"header": "conv-42", "credential": secrets.token_hex(4)}), NOW)
    for _ in range(1000):
        # the credential varies (a browser token per call): the session header still wins
        d = decide(s, unit(keys={"header": "conv-42", "credential": secrets.token_hex(4)}), NOW)
        assert (d.target, d.reason, d.bucket) == (first.target, "header", first.bucket)


def test_raising_the_gradium_weight_never_moves_a_key_to_legacy() -> None:
    keys = [secrets.token_hex(6) for _ in range(2000)]
    previous: dict[str, str] = {}
    for w in (0, 0.5, 5, 20, 50, 50.01, 80, 99.99, 100):
        s = settings(default={"gradium": w})
        for k in keys:
            t = decide(s, unit(keys={"credential": k}), NOW).target
            assert not (previous.get(k) == "gradium" and t == "legacy"), (k, w)
            previous[k] = t


def test_salt_and_tenant_reshuffle() -> None:
    assert [bucket("a", "acme", f"k{i}") for i in range(5)] != [bucket("b", "acme", f"k{i}") for i in range(5)]
    assert [bucket("s", "t1", f"k{i}") for i in range(5)] != [bucket("s", "t2", f"k{i}") for i in range(5)]


@pytest.mark.parametrize(
    ("keys", "sticky_by", "reason"),
    [
        ({"header": "h", "native": "n", "credential": "c"}, None, "header"),
        ({"native": "n", "credential": "c"}, None, "native"),
        ({"credential": "c"}, None, "credential"),
        ({}, None, "request"),
        ({"header": "h", "credential": "c"}, ["credential", "header"], "credential"),
        ({"header": "h"}, ["request"], "request"),
    ],
)
def test_stickiness_order(keys: dict[str, str], sticky_by: list[str] | None, reason: str) -> None:
    rule: dict[str, object] = {"match": {"tenant": "acme"}, "weights": {"gradium": 50}}
    if sticky_by:
        rule["sticky_by"] = sticky_by
    assert decide(settings(rules=[rule]), unit(keys=keys), NOW).reason == reason


def test_first_matching_rule_wins_on_tenant_provider_route_kind_transport() -> None:
    s = settings(rules=[
        {"match": {"tenant": "acme", "provider": "deepgram", "kind": "stt", "transport": "ws"},
         "weights": {"gradium": 0}},
        {"match": {"tenant": "acme", "route": ["voices_list"]}, "serve": "legacy"},
        {"match": {"tenant": ["acme", "beta"]}, "weights": {"gradium": 100}},
    ])
    dg_live = unit(provider="deepgram", route="listen_live", kind="stt", transport="ws")
    assert (decide(s, dg_live, NOW).target, decide(s, dg_live, NOW).rule) == ("legacy", 0)
    dg_rest = unit(provider="deepgram", route="listen_prerecorded", kind="stt", transport="rest")
    assert decide(s, dg_rest, NOW).target == "gradium"
    assert decide(s, unit(route="voices_list"), NOW).reason == "serve"
    assert decide(s, unit(tenant="other", keys={"credential": "c"}), NOW).rule is None


def test_ramp_steps_apply_at_unit_start() -> None:
    rule = {"match": {}, "weights": {"gradium": 5},
            "ramp": [{"at": "2026-07-08T09:00Z", "gradium": 20}, {"at": "2026-07-15T09:00Z", "gradium": 100}]}
    s = settings(rules=[rule])
    keys = [f"k{i}" for i in range(4000)]

    def share(now: datetime) -> float:
        return sum(decide(s, unit(keys={"header": k}), now).target == "gradium" for k in keys) / len(keys)

    assert share(datetime(2026, 7, 1, tzinfo=UTC)) < 0.08
    assert 0.17 < share(NOW) < 0.23
    assert share(datetime(2026, 7, 15, 9, 0, tzinfo=UTC) + timedelta(seconds=1)) == 1.0


def test_ramp_times_must_increase() -> None:
    with pytest.raises(ValueError, match="strictly increase"):
        settings(rules=[{"weights": {"gradium": 5}, "ramp": [{"at": "2026-07-15T09:00Z", "gradium": 20},
                                                            {"at": "2026-07-08T09:00Z", "gradium": 50}]}])


def test_resolution_is_checked() -> None:
    with pytest.raises(ValueError, match=r"0\.01"):
        settings(default={"gradium": 12.345})


def test_force_beats_everything_and_override_beats_the_bucket() -> None:
    s = settings(force="legacy", default={"gradium": 100})
    d = decide(s, unit(keys={"header": "h"}, override="gradium", stitched="gradium"), NOW)
    assert (d.target, d.reason) == ("legacy", "force")
    d = decide(settings(default={"gradium": 100}), unit(override="legacy"), NOW)
    assert (d.target, d.reason) == ("legacy", "override")
    assert legacy_possible(s) and not legacy_possible(settings(force="gradium", default={"gradium": 0}))


def test_stitching_overrides_the_bucket() -> None:
    s = settings(default={"gradium": 100})
    d = decide(s, unit(keys={"header": "h"}, stitched="legacy"), NOW)
    assert (d.target, d.reason) == ("legacy", "stitching")


def test_failover_defaults_off_for_tts_on_for_stt() -> None:
    s = settings(default={"gradium": 50})
    assert not decide(s, unit(keys={"header": "h"}), NOW).failover
    assert decide(s, unit(kind="stt", keys={"header": "h"}), NOW).failover
    # at weight 0 the other side takes no traffic: no failover unless asked for
    zero = settings(rules=[{"weights": {"gradium": 0}, "failover": "connect"}])
    assert not decide(zero, unit(), NOW).failover
    zero_ok = settings(rules=[{"weights": {"gradium": 0}, "failover": "connect", "failover_to_zero_weight": True}])
    assert decide(zero_ok, unit(), NOW).failover
