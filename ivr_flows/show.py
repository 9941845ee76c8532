"""Render a flow as an indented tree (for `callcenter ivr show`)."""
from __future__ import annotations

from typing import Any

from .check import successors
from .engine import Flow
from .values import prompt_list


def _args(args: Any) -> str:
    if not isinstance(args, dict):
        return ""
    return ", ".join(f"{k}={v}" for k, v in args.items())


def describe(node: dict[str, Any]) -> str:
    """One-line summary of a node."""
    kind = node.get("type")
    prompts = ", ".join(prompt_list(node))
    if kind == "play":
        text = f"play [{prompts}]" + ("" if node.get("interruptible", True) else " (not interruptible)")
    elif kind == "menu":
        text = f"menu [{prompts}] timeout {node.get('timeout_s', '-')}s retries {node.get('retries', '-')}"
    elif kind == "input":
        text = (f"input [{prompts}] {node.get('min_digits', 1)}-{node.get('max_digits')} digits"
                f" -> ${node.get('store')}")
    elif kind == "action":
        text = f"action {node.get('action')}({_args(node.get('args'))})"
        if node.get("store"):
            text += f" -> ${node['store']}"
    elif kind == "branch":
        text = f"branch on {node.get('var')}"
    elif kind == "say":
        what = next((f"{k} {node[k]}" for k in ("number", "digits", "date", "prompt_from") if k in node), "?")
        text = f"say [{prompts}] {what}" if prompts else f"say {what}"
    elif kind == "record":
        text = f"record [{prompts}] max {node.get('max_seconds')}s -> ${node.get('store')}"
    elif kind == "end":
        text = f"end {node.get('outcome')}"
        if node.get("reason"):
            text += f" ({node['reason']})"
    else:
        text = f"{kind}?"
    if node.get("set"):
        text += f" set {_args(node['set'])}"
    return text


def flow_tree(flow: Flow) -> str:
    """Depth-first from start; a node already shown is referenced, not repeated."""
    lines = [f"flow {flow.name}" + (f": {flow.description}" if flow.description else "")]
    shown: set[str] = set()

    def walk(node_id: str, label: str, depth: int) -> None:
        pad = "  " * depth
        prefix = f"{pad}{label} -> " if label else pad
        node = flow.nodes.get(node_id)
        if node is None:
            lines.append(f"{prefix}{node_id} (MISSING)")
            return
        if node_id in shown:
            lines.append(f"{prefix}{node_id} (see above)")
            return
        shown.add(node_id)
        lines.append(f"{prefix}{node_id}: {describe(node)}")
        for edge_label, target in successors(node):
            walk(str(target), edge_label, depth + 1)

    walk(flow.start, "", 1)
    for name, target in flow.entries.items():
        lines.append(f"entry {name}:")
        walk(target, "", 1)
    unreachable = [n for n in flow.nodes if n not in shown]
    if unreachable:
        lines.append("unreachable: " + ", ".join(unreachable))
    return "\n".join(lines)
