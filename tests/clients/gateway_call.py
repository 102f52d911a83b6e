"""aimarket-oracle-gateway 0.3.1, unchanged, as a real MCP client of our hub: the gateway is
an MCP stdio server whose tools call `POST {AIMARKET_HUB_URL}/ai-market/v2/invoke` (with
`source_hub: "mcp-oracle-gateway"` and the channel from AIMARKET_PAYMENT_CHANNEL). This
script starts it over stdio with the MCP SDK the gateway itself depends on, lists its tools
and calls `get_agent_trust` (LUMEN's `lumen.score@v1`), which the hub pays on its admission
signature.

The published 0.3.1 cannot start its stdio server as shipped: its extra tool surface
(`mcp_tool_surface.register_extended_tools`) annotates tools with names that exist only
inside that function under `from __future__ import annotations`, which FastMCP cannot
resolve (tried with mcp 1.6.0 to 1.30.0). The server is therefore started with that one
registration skipped; every other line, including the ten core tools and the client that
calls the hub, is the package's own.

Usage: python gateway_call.py HUB_URL CHANNEL_ID CHANNEL_SECRET. Prints one line
`RESULT: {json}` for the Rust test.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


SERVER = """
import aimarket_oracle_gateway.mcp_tool_surface as surface
surface.register_extended_tools = lambda *args, **kwargs: None
from aimarket_oracle_gateway import stdio_server
stdio_server.main()
"""


async def main(hub: str, channel: str, secret: str) -> None:
    env = dict(os.environ)
    env.update({
        "AIMARKET_HUB_URL": hub,
        "AIMARKET_PAYMENT_CHANNEL": channel,
        "AIMARKET_PAYMENT_CHANNEL_SECRET": secret,
        "NO_PROXY": "127.0.0.1,localhost",
    })
    server = StdioServerParameters(command=sys.executable, args=["-c", SERVER], env=env)
    out = {}
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            out["tools"] = sorted(t.name for t in listed.tools)
            result = await session.call_tool("get_agent_trust", {
                "nodes": 3, "edges": [[0, 1, 1.0], [1, 2, 0.5], [2, 0, 0.5]], "target_node": 1})
            text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
            out["is_error"] = bool(result.isError)
            try:
                out["envelope"] = json.loads(text)
            except ValueError:
                out["text"] = text
    print("RESULT: " + json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
