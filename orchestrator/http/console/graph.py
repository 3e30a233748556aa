"""The process graph drawn as SVG on the server: no renderer shipped to the browser.

Nodes are laid out top to bottom in layers by their distance from the start node (as
Corezoid draws a process); links to a lower layer are straight curves, links back up (the
wait loops) go round the side. Each node links to the list of its tasks, and its counter
carries ``data-count-for`` so the page script can update it in place.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

BOX_W, BOX_H = 212, 58
GAP_X, GAP_Y = 36, 64
PAD = 24
TITLE_CHARS = 24


@dataclass
class _Placed:
    node: dict[str, Any]
    layer: int
    x: float = 0.0
    y: float = 0.0


def _layers(nodes: list[dict[str, Any]]) -> dict[str, int]:
    by_id = {n["id"]: n for n in nodes}
    start = next((n["id"] for n in nodes if n["kind"] == "start"), nodes[0]["id"])
    depth = {start: 0}
    queue = deque([start])
    while queue:
        nid = queue.popleft()
        for target in by_id[nid].get("exits", []):
            if target in by_id and target not in depth:
                depth[target] = depth[nid] + 1
                queue.append(target)
    last = max(depth.values(), default=0)
    for n in nodes:  # unreachable nodes (a default escalation, say) go to the bottom
        depth.setdefault(n["id"], last + 1)
    return depth


def _short(title: str) -> str:
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"


# (from, to, label, dotted): services/graph.py's edges (conditions, time limits, errors).
Edge = tuple[str, str, str, bool]
LABEL_CHARS = 26
LOOP_LABEL_ROOM = 110  # to the right of the loops, for their labels


def _readable(label: str) -> str:
    """A condition or time limit as a person scans it: ``status ~ delivered|read``."""
    if "{{" in label:  # a computed time limit: its template is on the node's page
        return "time limit" if label.startswith("after") else label
    text = label.replace(" regexp ", " ~ ").replace(" eq ", " = ").replace(" ne ", " ≠ ")
    return text.replace("^(", "").replace(")$", "").replace("^", "").replace("$", "")


def _bezier(p0: float, p1: float, p2: float, p3: float, t: float) -> float:
    u = 1 - t
    return u**3 * p0 + 3 * u**2 * t * p1 + 3 * u * t**2 * p2 + t**3 * p3


def render(slug: str, nodes: list[dict[str, Any]], edges: list[Edge] | None = None) -> Markup:
    if not nodes:
        return Markup("")
    depth = _layers(nodes)
    rows: dict[int, list[_Placed]] = {}
    for n in nodes:
        rows.setdefault(depth[n["id"]], []).append(_Placed(n, depth[n["id"]]))
    widest = max(len(r) for r in rows.values())
    width = PAD * 2 + widest * BOX_W + (widest - 1) * GAP_X + 2 * GAP_X  # room for loops
    if any(label for _a, _b, label, _d in edges or []):
        width += LOOP_LABEL_ROOM
    height = PAD * 2 + len(rows) * BOX_H + (len(rows) - 1) * GAP_Y
    placed: dict[str, _Placed] = {}
    for layer, row in sorted(rows.items()):
        _order(row, placed)
        row_w = len(row) * BOX_W + (len(row) - 1) * GAP_X
        x0 = (width - row_w) / 2
        for i, p in enumerate(row):
            p.x = x0 + i * (BOX_W + GAP_X)
            p.y = PAD + layer * (BOX_H + GAP_Y)
            placed[p.node["id"]] = p
    links, labels = _links(placed, edges or [])
    boxes = [_box(slug, p) for p in placed.values()] + labels  # labels on top
    return Markup(
        f'<svg class="graph" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'role="group" aria-label="process graph">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrowhead"/></marker></defs>'
        f"{''.join(links)}{''.join(boxes)}</svg>"
    )


def _order(row: list[_Placed], placed: dict[str, _Placed]) -> None:
    """Put each node under the nodes that lead to it (barycentre), to cut crossings."""
    index = {id(p): i for i, p in enumerate(row)}

    def key(p: _Placed) -> tuple[float, int]:
        xs = [q.x for q in placed.values() if p.node["id"] in q.node.get("exits", [])]
        return (sum(xs) / len(xs) if xs else float("inf"), index[id(p)])

    row.sort(key=key)


def _label(x: float, y: float, text: str, dotted: bool, anchor: str = "middle") -> str:
    short = _readable(text)
    short = short if len(short) <= LABEL_CHARS else short[: LABEL_CHARS - 1] + "…"
    cls = "edge-label dotted" if dotted else "edge-label"
    return (
        f'<text class="{cls}" x="{x:.0f}" y="{y:.0f}" text-anchor="{anchor}">'
        f"<title>{escape(text)}</title>{escape(short)}</text>"
    )


def _links(placed: dict[str, _Placed], edges: list[Edge]) -> tuple[list[str], list[str]]:
    out, labels = [], []
    seen: set[tuple[str, str]] = set()
    texts: dict[tuple[str, str], list[str]] = {}
    dotted: dict[tuple[str, str], bool] = {}
    for a, b, text, dash in edges:
        if text:
            texts.setdefault((a, b), []).append(text)
        dotted[(a, b)] = dotted.get((a, b), True) and dash
    for src in placed.values():
        for target in src.node.get("exits", []):
            dst = placed.get(target)
            if dst is None or (src.node["id"], target) in seen:
                continue
            seen.add((src.node["id"], target))
            if dst.layer > src.layer:
                x1, y1 = src.x + BOX_W / 2, src.y + BOX_H
                x2, y2 = dst.x + BOX_W / 2, dst.y
                mid = (y1 + y2) / 2
                d = f"M{x1:.0f},{y1:.0f} C{x1:.0f},{mid:.0f} {x2:.0f},{mid:.0f} {x2:.0f},{y2:.0f}"
                # Near the target, where links fanning out of one node have spread apart.
                t = 0.68
                at = (_bezier(x1, x1, x2, x2, t), _bezier(y1, mid, mid, y2, t) + 4)
                anchor = "middle"
            elif dst.layer == src.layer and src is not dst:
                # Same row: side to side when neighbours, else a dip under the row.
                left, right = (src, dst) if src.x < dst.x else (dst, src)
                if right.x - left.x <= BOX_W + GAP_X + 1:
                    y = src.y + BOX_H / 2
                    x1 = src.x + BOX_W if src is left else src.x
                    x2 = dst.x if src is left else dst.x + BOX_W
                    d = f"M{x1:.0f},{y:.0f} L{x2:.0f},{y:.0f}"
                    # Below the row, in the gap: a box's text stays readable.
                    at = ((x1 + x2) / 2, src.y + BOX_H + 13)
                    anchor = "middle"
                else:
                    x1, x2 = src.x + BOX_W / 2, dst.x + BOX_W / 2
                    y1 = src.y + BOX_H
                    dip = y1 + GAP_Y * 0.6
                    d = (
                        f"M{x1:.0f},{y1:.0f} C{x1:.0f},{dip:.0f} "
                        f"{x2:.0f},{dip:.0f} {x2:.0f},{y1:.0f}"
                    )
                    at = ((x1 + x2) / 2, dip - 4)
                    anchor = "middle"
            else:  # a loop back up (or to itself): round the right-hand side
                x1, y1 = src.x + BOX_W, src.y + BOX_H * 0.65
                x2, y2 = dst.x + BOX_W, dst.y + BOX_H * 0.35
                bulge = max(x1, x2) + GAP_X * 0.9
                if src is dst:
                    y1, y2 = src.y + BOX_H * 0.75, src.y + BOX_H * 0.25
                d = (
                    f"M{x1:.0f},{y1:.0f} C{bulge:.0f},{y1:.0f} "
                    f"{bulge:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
                )
                at = (bulge + 3, (y1 + y2) / 2 + 4)
                anchor = "start"
            key = (src.node["id"], target)
            cls = "link dotted" if dotted.get(key) else "link"
            out.append(f'<path class="{cls}" d="{d}" marker-end="url(#arrow)"/>')
            if key in texts:
                text = " / ".join(texts[key])
                labels.append(_label(at[0], at[1], text, dotted.get(key, False), anchor))
    return out, labels


def _box(slug: str, p: _Placed) -> str:
    n = p.node
    nid, title, kind = str(n["id"]), str(n.get("title") or n["id"]), str(n["kind"])
    href = f"/console/processes/{quote(slug, safe='')}/nodes/{quote(nid, safe='')}"
    count = int(n.get("count", 0))
    label = f"{title} ({kind}): {count} tasks"
    cx = p.x + BOX_W - 10
    return (
        f'<a href="{escape(href)}" class="node kind-{escape(kind)}" '
        f'aria-label="{escape(label)}" data-node="{escape(nid)}">'
        f"<title>{escape(title)} — {escape(kind)}</title>"
        f'<rect x="{p.x:.0f}" y="{p.y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="8"/>'
        f'<text class="title" x="{p.x + 12:.0f}" y="{p.y + 24:.0f}">{escape(_short(title))}</text>'
        f'<text class="kind" x="{p.x + 12:.0f}" y="{p.y + 44:.0f}">{escape(kind)}</text>'
        f'<text class="count" x="{cx:.0f}" y="{p.y + 44:.0f}" text-anchor="end" '
        f'data-count-for="{escape(nid)}">{count}</text>'
        "</a>"
    )
