"""What a run's cloud instances cost: types, lifecycle, host hours, price.

A provider that launches instances writes one record per instance as it
goes (``UsageStore``); the run's answer sums them. A Spot instance is priced
at the Spot price its type had in its zone when it was launched (from the
Spot price history); an instance still running counts until now.
"""

from __future__ import annotations

import time
from typing import Any, Protocol


class UsageStore(Protocol):
    async def save_instance(
        self, run_id: str, instance_id: str, fields: dict[str, Any]
    ) -> None:
        """Add ``fields`` to the record of one of the run's instances."""
        ...


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def usage_json(
    records: list[dict[str, Any]], *, now: float | None = None
) -> dict[str, Any]:
    """The answer's ``fleet`` object for a run's instance records.

    ``estimatedCostUsd`` covers the instances with a known price; the hours
    of the others are ``unpricedHostHours``.
    """
    now = time.time() if now is None else now
    instances = []
    host_hours = 0.0
    unpriced_hours = 0.0
    cost = 0.0
    for record in records:
        launched = record.get("launchedAt")
        ended = record.get("terminatedAt")
        hours = 0.0
        if launched is not None:
            hours = max(0.0, ((ended or now) - launched) / 3600)
        # XXX: on-demand instances have no price here; the AWS Price List API
        # (pricing:GetProducts) would give one, with a permission more.
        price = record.get("priceUsdPerHour")
        host_hours += hours
        if price is None:
            unpriced_hours += hours
        else:
            cost += hours * price
        instances.append(
            {
                "instanceId": record["instanceId"],
                "instanceType": record.get("instanceType"),
                "lifecycle": record.get("lifecycle"),
                "zone": record.get("zone"),
                "launchedAt": _iso(launched),
                "terminatedAt": _iso(ended),
                "hostHours": round(hours, 6),
                "priceUsdPerHour": price,
            }
        )
    return {
        "instances": instances,
        "instanceTypes": sorted(
            {i["instanceType"] for i in instances if i["instanceType"]}
        ),
        "hostHours": round(host_hours, 6),
        "unpricedHostHours": round(unpriced_hours, 6),
        "estimatedCostUsd": round(cost, 12),
    }
