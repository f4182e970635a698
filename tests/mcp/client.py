"""A real MCP client (the official Python SDK, pinned in requirements.txt)
for Credence's broker tests: connects to <url> with an API token, lists the
tools, calls list_connections and then each call given as JSON, and prints
one JSON line per result: {"tools": [...]}, then {"tool", "isError", "text"}.

Usage: client.py <url> <token> <calls as a JSON list of {"name", "arguments"}>
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


def text_of(result):
    return "".join(getattr(block, "text", "") for block in result.content)


async def main(url, token, calls):
    http = create_mcp_http_client(headers={"Authorization": f"Token {token}"})
    async with http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                print(json.dumps({"tools": sorted(tool.name for tool in tools.tools)}), flush=True)
                for call in calls:
                    result = await session.call_tool(call["name"], call.get("arguments") or {})
                    print(
                        json.dumps(
                            {
                                "tool": call["name"],
                                "isError": bool(result.is_error),
                                "text": text_of(result),
                            }
                        ),
                        flush=True,
                    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
