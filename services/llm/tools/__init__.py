"""OpenAI function-calling tools the agents may use, validated before they run."""

from services.llm.tools.base import Tool, ToolBox, ToolContext, ToolResult, refused
from services.llm.tools.booking import BOOKING_TOOLS
from services.llm.tools.escalation import ESCALATION_TOOLS

TOOLS: dict[str, Tool] = {tool.name: tool for tool in [*BOOKING_TOOLS, *ESCALATION_TOOLS]}
"""Every tool an agent file may name, by name."""

__all__ = ["TOOLS", "Tool", "ToolBox", "ToolContext", "ToolResult", "refused"]
