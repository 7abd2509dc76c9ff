"""The benchmark's storm is the shape it says: Alertmanager's default grouping (one alert name per webhook, across
many hosts), every label set unique, one alert in ten the resolve of an alert sent before."""

from __future__ import annotations

from datetime import UTC, datetime

from devstack.alertstorm import grouped_storm, occurrence

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_each_webhook_is_one_alert_name_across_fifty_hosts_with_unique_label_sets() -> None:
    webhooks = grouped_storm(60_000, t0=T0)
    assert len(webhooks) == 1_200
    names, hosts = set(), set()
    for hook in webhooks:
        alerts = hook["alerts"]
        assert len(alerts) == 50
        assert len({a["labels"]["alertname"] for a in alerts}) == 1 == len(hook["groupLabels"])
        assert len({a["labels"]["instance"] for a in alerts}) == 50
        names.add(alerts[0]["labels"]["alertname"])
        hosts |= {a["labels"]["instance"] for a in alerts}
    assert (len(names), len(hosts)) == (20, 2_000)
    firing = [a for hook in webhooks for a in hook["alerts"] if a["status"] == "firing"]
    assert len({occurrence(a) for a in firing}) == len(firing) == 54_100  # no firing alert is a repeat


def test_one_alert_in_ten_resolves_one_sent_a_round_earlier() -> None:
    webhooks = grouped_storm(60_000, t0=T0)
    sent: dict[tuple[str, str], int] = {}
    resolves = 0
    for i, hook in enumerate(webhooks):
        for a in hook["alerts"]:
            if a["status"] == "firing":
                sent[occurrence(a)] = i
                continue
            resolves += 1
            assert sent[occurrence(a)] == i - 20  # the same alert (fingerprint and startsAt), sent 20 webhooks before
            ends, starts = (datetime.fromisoformat(a[k].replace("Z", "+00:00")) for k in ("endsAt", "startsAt"))
            assert ends > starts
    assert resolves == 5_900  # five in each webhook after the first round of twenty
