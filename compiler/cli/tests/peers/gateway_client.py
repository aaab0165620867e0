"""A real MCP client (the Python `mcp` SDK from PyPI) driving `agentc gateway`.

    python gateway_client.py stdio PLAN.json -- COMMAND ARG...
    python gateway_client.py http PLAN.json URL TOKEN

PLAN.json: {"approve": true|false|null, "calls": [{"tool": NAME, "arguments": {...}}]}.
`approve` answers the gateway's elicitations (null: the client does not offer
elicitation). Prints one JSON object: the tools listed, then each call's result
(`is_error`, `structured`, `text`) or its JSON-RPC error (`error`: code, message), and
the elicitations asked.
"""

import asyncio
import json
import sys

import httpx2
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


async def main() -> None:
    mode, plan_path = sys.argv[1], sys.argv[2]
    with open(plan_path, encoding="utf-8") as file:
        plan = json.load(file)
    asked: list[str] = []

    async def elicit(context, params):
        asked.append(params.message)
        if plan["approve"]:
            return types.ElicitResult(action="accept", content={"approve": True})
        return types.ElicitResult(action="decline")

    if mode == "stdio":
        command = sys.argv[sys.argv.index("--") + 1 :]
        server = StdioServerParameters(command=command[0], args=command[1:])
    else:
        url, token = sys.argv[3], sys.argv[4]
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        server = streamable_http_client(url, http_client=http)
    callback = elicit if plan.get("approve") is not None else None
    report: dict = {"calls": []}
    async with Client(server, elicitation_callback=callback) as client:
        listed = await client.list_tools()
        report["tools"] = [tool.name for tool in listed.tools]
        for call in plan["calls"]:
            try:
                result = await client.call_tool(call["tool"], call.get("arguments", {}))
                texts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
                report["calls"].append(
                    {
                        "tool": call["tool"],
                        "is_error": bool(result.is_error),
                        "structured": result.structured_content,
                        "text": "\n".join(texts),
                    }
                )
            except MCPError as error:
                report["calls"].append(
                    {"tool": call["tool"], "error": error.error.code, "message": error.error.message}
                )
    report["elicitations"] = asked
    print(json.dumps(report))


asyncio.run(main())
