"""aimarket-agent 2.6.0 against our hub, unchanged: the SDK's run() path (well-known, search,
channel open, paid invoke, receipt verification at the provider's origin, channel close), then
invoke_single (the path of the SDK's CLI `invoke`).

Usage: python agent_run.py HUB_URL TASK. Prints one line `RESULT: {json}` for the Rust test.
"""

import json
import sys
import time

from aimarket_agent import AIMarketAgent, __version__


def main(hub: str, task: str) -> None:
    out = {"agent_version": __version__}
    with AIMarketAgent(base_url=hub, budget=1.0) as agent:
        run = agent.run(task)
        bom = run.get("bill_of_materials") or {}
        step = (bom.get("results") or [{}])[0]
        out["run"] = {
            "ok": run.get("ok"),
            "error": run.get("error"),
            "plan": run.get("plan"),
            "channel_id": run.get("channel_id"),
            "success": step.get("success"),
            "result": step.get("result"),
            "price_usd": step.get("price_usd"),
            "receipt_verified": step.get("receipt_verified"),
            "receipt_verify_reason": step.get("receipt_verify_reason"),
            "payment_required": step.get("payment_required"),
            "settlement": bom.get("settlement"),
            "total_spent_usd": run.get("total_spent_usd"),
        }
        source_hub = (run.get("plan") or [{}])[0].get("source_hub", "local")
        # The SDK funds each channel with the placeholder hash `agent-<unix seconds>`, and a
        # hash funds one channel only (README: "What the hub does with unsound client
        # requests"); opening a second channel in the same second would be refused and the
        # SDK would carry on unpaid. Starting the next call in the next second keeps this
        # test about the invoke path rather than about that collision.
        time.sleep(1.01 - time.time() % 1.0)
        single = agent.invoke_single(
            "polyglot-text", "text.dedupe_lines@v1", {"text": "a\nb\na"}, source_hub=source_hub
        )
        out["invoke_single"] = {
            "success": single.get("success"),
            "result": single.get("result"),
            "receipt_verified": single.get("receipt_verified"),
            "receipt_verify_reason": single.get("receipt_verify_reason"),
            "error": single.get("error"),
        }
    print("RESULT: " + json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
