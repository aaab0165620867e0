"""A streamable-HTTP MCP server on the Python SDK (`mcp` 2.x, PyPI), on 127.0.0.1.

usage: http_server.py PORT [TOKEN]
Tools: `add(a, b)` (structured output) and `shout(text)` (text). With TOKEN, every
request must carry `Authorization: Bearer TOKEN` (else 401).
"""
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.responses import PlainTextResponse

port = int(sys.argv[1])
token = sys.argv[2] if len(sys.argv) > 2 else None

mcp = MCPServer("agentc-test-peer", version="1.0.0")


@mcp.tool(description="Adds two integers.")
def add(a: int, b: int) -> int:
    return a + b


@mcp.tool(description="Returns the text in capitals.")
def shout(text: str) -> str:
    return text.upper()


app = mcp.streamable_http_app()


class RequireBearer:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and token is not None:
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await PlainTextResponse("unauthorized", status_code=401)(scope, receive, send)
                return
        await self.inner(scope, receive, send)


uvicorn.run(RequireBearer(app), host="127.0.0.1", port=port, log_level="warning")
