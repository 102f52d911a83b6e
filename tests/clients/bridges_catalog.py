"""aimarket-bridges 0.2.0 against our hub, unchanged: the tool catalogue the LangChain /
CrewAI / AutoGen adapters are built from (our /ai-market/v2/manifest, joined with search for
intent ranking), every argument model built, and calls through the shared HubClient (a free
one and a priced one paid from a per-call channel, receipts checked against the catalogue).

Usage: python bridges_catalog.py HUB_URL. Prints one line `RESULT: {json}` for the Rust test.
"""

import json
import sys

from aimarket_bridges.catalog import fetch_catalog
from aimarket_bridges.client import HubClient


def main(hub: str) -> None:
    caps = fetch_catalog(hub)
    models = 0
    for cap in caps:
        cap.args_model()
        models += 1
    out = {
        "count": len(caps),
        "models": models,
        "schema_gaps": sorted({g for c in caps for g in c.schema_gaps}),
        "tool_names": [c.tool_name for c in caps],
        "sources": sorted({c.source_hub for c in caps}),
        "ranked": [c.capability_id for c in fetch_catalog(hub, intent="weather forecast", limit=3)],
        "free": len(fetch_catalog(hub, free_only=True)),
    }
    by_id = {c.capability_id: c for c in caps}
    morse = by_id["translate.morse@v1"]
    out["morse_description"] = morse.tool_description()
    with HubClient(hub, budget_usd=1.0) as client:
        calls = {}
        # The priced call goes first: every HubClient call opens a channel funded with the
        # SDK's `agent-<unix seconds>` placeholder, so later calls in the same second get no
        # channel (README: "What the hub does with unsound client requests"); free calls
        # do not need one.
        for cid, args in [("translate.morse@v1", {"text": "sos"}), ("calc.evaluate@v1", {"expression": "6*7"}),
                          ("calc.evaluate@v1", {})]:
            r = client.invoke(by_id[cid], args)
            calls.setdefault(cid, []).append({"ok": r.ok, "output": r.output, "price_usd": r.price_usd,
                                              "receipt_verified": r.receipt_verified,
                                              "reason": r.receipt_verify_reason, "for_model": str(r.for_model())})
        out["calls"] = calls
        out["spent_usd"] = client.spent_usd
    print("RESULT: " + json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
