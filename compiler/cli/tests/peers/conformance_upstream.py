"""The upstream MCP server behind `agentc gateway` in the official conformance run.

A stdio server on the Python `mcp` SDK (PyPI), low-level API, with the tools the
conformance suite's server scenarios call (`tools-call-*`, `json-schema-2020-12`), each
answering exactly as the suite's scenario describes. The gateway imports these tools,
offers them through an agent, and enforces every call; what it does not pass through
(images, audio, embedded resources: no output check can read them) shows as the expected
failures listed in `conformance-baseline.yml`.
"""

import asyncio

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

NO_ARGUMENTS = {"type": "object", "properties": {}, "additionalProperties": False}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="

TOOLS = [
    types.Tool(name="test_simple_text", description="Returns a simple text response.", input_schema=NO_ARGUMENTS),
    types.Tool(name="test_error_handling", description="Always returns an error result.", input_schema=NO_ARGUMENTS),
    types.Tool(name="test_image_content", description="Returns an image.", input_schema=NO_ARGUMENTS),
    types.Tool(
        name="test_multiple_content_types",
        description="Returns text, an image and an embedded resource.",
        input_schema=NO_ARGUMENTS,
    ),
    types.Tool(
        name="json_schema_2020_12_tool",
        description="Tool with JSON Schema 2020-12 features",
        input_schema={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                }
            },
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": False,
        },
    ),
]


async def list_tools(context, params):
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(context, params):
    if params.name == "test_simple_text":
        return types.CallToolResult(content=[types.TextContent(type="text", text="This is a simple text response for testing.")])
    if params.name == "test_error_handling":
        return types.CallToolResult(
            is_error=True,
            content=[types.TextContent(type="text", text="This tool intentionally returns an error for testing")],
        )
    if params.name == "test_image_content":
        return types.CallToolResult(content=[types.ImageContent(type="image", data=PNG, mime_type="image/png")])
    if params.name == "test_multiple_content_types":
        return types.CallToolResult(
            content=[
                types.TextContent(type="text", text="Multiple content types test:"),
                types.ImageContent(type="image", data=PNG, mime_type="image/png"),
            ]
        )
    if params.name == "json_schema_2020_12_tool":
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"Hello, {(params.arguments or {}).get('name', 'nobody')}")])
    raise ValueError(f"unknown tool {params.name}")


server = Server("agentc-conformance-upstream", on_list_tools=list_tools, on_call_tool=call_tool)


async def main():
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


asyncio.run(main())
