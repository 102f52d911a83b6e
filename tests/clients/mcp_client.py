"""The official MCP Python SDK (mcp 2.3.0) against our hub's /ai-market/mcp, unchanged:
`Client(url)` (server/discover probe, initialize, tools/list), then tools/call of
market_search, market_describe and market_invoke (unpaid: a 402 tool result; then paid from a
channel opened where the tool result says).

Usage: python mcp_client.py HUB_URL. Prints one line `RESULT: {json}` for the Rust test.
"""

import asyncio
import json
import sys

import httpx2 as httpx
from mcp import Client

MORSE = {"product_id": "polyglot-translate", "capability_id": "translate.morse@v1", "input": {"text": "sos"}}


def structured(result):
    return {"is_error": result.is_error, "content": result.structured_content,
            "text": [c.text for c in result.content if getattr(c, "type", "") == "text"]}


async def main(hub: str) -> None:
    out = {}
    async with Client(f"{hub}/ai-market/mcp") as client:
        out["protocol_version"] = client.protocol_version
        out["server_name"] = client.server_info.name if client.server_info else None
        out["instructions"] = client.instructions
        listed = await client.list_tools()
        out["tools"] = [{"name": t.name, "input_schema": t.input_schema} for t in listed.tools]
        out["search"] = structured(await client.call_tool(
            "market_search", {"intent": "translate text to morse code", "limit": 3}))
        out["describe"] = structured(await client.call_tool(
            "market_describe", {"product_id": MORSE["product_id"], "capability_id": MORSE["capability_id"]}))
        unpaid = await client.call_tool("market_invoke", MORSE)
        out["unpaid"] = structured(unpaid)
        opening = unpaid.structured_content["open_channel"]
        body = dict(opening["body"], tx_hash="demo-mcp-client")
        channel = httpx.post(opening["url"], json=body).json()["channel"]
        paid = await client.call_tool("market_invoke", dict(
            MORSE, payment_channel=channel["channel_id"], payment_channel_secret=channel["channel_secret"]))
        out["paid"] = structured(paid)
    print("RESULT: " + json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
