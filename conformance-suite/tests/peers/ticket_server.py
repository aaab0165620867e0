"""A ticket-search MCP server over streamable HTTP, on the Python SDK (`mcp` 2.x, PyPI),
on 127.0.0.1: the live target of the MCP conformance tests (AGX-M5).

usage: ticket_server.py PORT TOKEN [correct|regressed]

One tool, `search_tickets(query, limit)`, with structured output. Every request must
carry `Authorization: Bearer TOKEN` (else 401). At most 5 calls are answered per second;
past that, a call is a tool error. An empty query is refused, unless the server runs
`regressed`: then it answers with every ticket, the known pitfall a conformance run must
catch.
"""
import collections
import sys
import time

import uvicorn
from typing_extensions import TypedDict
from mcp.server.mcpserver import MCPServer
from starlette.responses import PlainTextResponse

port = int(sys.argv[1])
token = sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "correct"

RATE_LIMIT = 5
WINDOW_SECONDS = 1.0


class Ticket(TypedDict):
    id: str
    title: str


class SearchResult(TypedDict):
    tickets: list[Ticket]


TICKETS = [
    Ticket(id="T-1", title="Printer jams on the third floor"),
    Ticket(id="T-2", title="VPN drops every hour"),
    Ticket(id="T-3", title="Printer out of toner"),
]

answered = collections.deque()
mcp = MCPServer("agentc-conformance-tickets", version="1.0.0")


@mcp.tool(description="Searches support tickets by words in their title.")
def search_tickets(query: str, limit: int = 10) -> SearchResult:
    now = time.monotonic()
    while answered and now - answered[0] >= WINDOW_SECONDS:
        answered.popleft()
    if len(answered) >= RATE_LIMIT:
        raise ValueError("rate limit exceeded: retry after 1 s")
    answered.append(now)
    if not query.strip():
        if mode == "regressed":
            return SearchResult(tickets=TICKETS[:limit])
        raise ValueError("the query is empty: say what to search for")
    words = query.lower().split()
    found = [ticket for ticket in TICKETS if any(word in ticket["title"].lower() for word in words)]
    return SearchResult(tickets=found[:limit])


app = mcp.streamable_http_app()


class RequireBearer:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await PlainTextResponse("unauthorized", status_code=401)(scope, receive, send)
                return
        await self.inner(scope, receive, send)


uvicorn.run(RequireBearer(app), host="127.0.0.1", port=port, log_level="warning")
