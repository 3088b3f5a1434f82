"""A self-contained HTML report of a network: the rendered graph (SVG, with a tooltip on every
node giving the layer's parameters and output shapes) and the analysis table of `info`, per
layer and per block, sortable by any column. One file, no network access needed to open it.

The page sorts a table when its header is clicked (again: the other way); `#sort=TABLE:COLUMN:
asc|desc` in the address clicks that header on load (TABLE is `layers` or `blocks`), which is
how the tests drive the page in a browser.
"""
from __future__ import annotations

import html

from .info import analyze, format_bytes, format_count
from ..graph.net import Net
from .render import block_of, dot_pipe, to_dot

_COLUMNS = [("name", "layer", "text"), ("type", "type", "text"), ("block", "block", "text"),
            ("output", "output", "text"), ("params", "params", "num"), ("macs", "MACs", "num"),
            ("memory", "memory", "num")]
_BLOCK_COLUMNS = [("name", "block", "text"), ("layers", "layers", "num"),
                  ("output", "output", "text"), ("params", "params", "num"),
                  ("macs", "MACs", "num"), ("memory", "memory", "num")]


def report_html(net: Net, *, rankdir: str = "TB", collapse: bool | str = False) -> str:
    """The report as one HTML document (needs Graphviz's dot for the picture)."""
    svg = dot_pipe(to_dot(net, rankdir=rankdir, collapse=collapse), "svg").decode("utf-8")
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: inline SVG
    analysis = analyze(net, partial=True)
    pattern = collapse if isinstance(collapse, str) else None
    rows, blocks = [], {}
    for r in analysis.layers:
        block = block_of(r.name, pattern) or ""
        params = r.params + r.batchnorm
        output = ", ".join("×".join(map(str, s)) for s in r.output_shapes) or "?"
        rows.append({"name": r.name + (" *" if r.in_place else ""), "type": r.type,
                     "block": block, "output": output,
                     "params": params, "macs": r.macs, "memory": r.memory})
        if block:
            b = blocks.setdefault(block, {"name": block, "layers": 0, "params": 0, "macs": 0,
                                          "memory": 0})
            b["output"] = output  # the block's last layer's
            b["layers"] += 1
            b["params"] += params
            b["macs"] += r.macs
            b["memory"] += r.memory
    t = analysis.totals
    summary = (f"input {analysis.inputs_text()}; {t['layers']} layers; "
               f"{analysis.totals_text()}")
    title = html.escape(net.name or "network")
    layer_table = _table("layers", _COLUMNS, rows,
                         ["total", f"{t['layers']} layers", "", "",
                          format_count(t["params"] + t["batchnorm"]), format_count(t["macs"]),
                          format_bytes(t["memory"])])
    in_blocks = [sum(b[k] for b in blocks.values()) for k in ("layers", "params", "macs",
                                                               "memory")]
    block_table = _table("blocks", _BLOCK_COLUMNS, list(blocks.values()),
                         [f"{len(blocks)} blocks", format_count(in_blocks[0]), "", format_count(in_blocks[1]),
                          format_count(in_blocks[2]), format_bytes(in_blocks[3])]) \
        if blocks else "<p>No blocks: no layer names share a block prefix.</p>"
    notes = "".join(f"<li>{html.escape(w)}</li>" for w in analysis.notes + analysis.warnings)
    return _PAGE.format(title=title, summary=html.escape(summary), svg=svg,
                        layers=layer_table, blocks=block_table,
                        notes=f"<ul class='notes'>{notes}</ul>" if notes else "",
                        style=_STYLE, script=_SCRIPT)


def _table(table_id: str, columns, rows, totals) -> str:
    head = "".join(f'<th data-key="{key}" data-kind="{kind}">{label}</th>'
                   for key, label, kind in columns)
    body = []
    for row in rows:
        cells = []
        for key, _, kind in columns:
            value = row[key]
            if kind == "num":
                shown = format_bytes(value) if key == "memory" and value else format_count(value)
                cells.append(f'<td data-v="{value}">{shown}</td>')
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    foot = ("<tfoot><tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in totals)
            + "</tr></tfoot>") if totals else ""
    return (f'<table id="{table_id}" class="sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody>{foot}</table>")


_STYLE = """
body { font: 14px/1.4 Helvetica, Arial, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.5em; }
.graph { overflow: auto; max-height: 80vh; border: 1px solid #ddd; padding: 0.5em; }
.graph svg { max-width: none; }
table { border-collapse: collapse; margin-top: 0.5em; }
th, td { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left; }
td[data-v] { text-align: right; font-variant-numeric: tabular-nums; }
th { cursor: pointer; user-select: none; background: #f4f4f4; position: sticky; top: 0; }
th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
tfoot td { font-weight: bold; border-top: 2px solid #999; }
tr:hover td { background: #fafad2; }
.notes { color: #a60; }
"""

# Sorting: numbers by their data-v value, text by locale; the totals row (tfoot) stays put.
_SCRIPT = """
function sortTable(table, key, dir) {
  const th = table.querySelector('th[data-key="' + key + '"]');
  if (!th) return;
  const col = Array.prototype.indexOf.call(th.parentNode.children, th);
  const num = th.dataset.kind === 'num';
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort(function (a, b) {
    const x = a.cells[col], y = b.cells[col];
    const c = num ? Number(x.dataset.v) - Number(y.dataset.v)
                  : x.textContent.localeCompare(y.textContent);
    return dir === 'desc' ? -c : c;
  });
  rows.forEach(function (r) { body.appendChild(r); });
  table.querySelectorAll('th').forEach(function (h) { h.className = ''; });
  th.className = dir;
}
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    sortTable(th.closest('table'), th.dataset.key, th.className === 'asc' ? 'desc' : 'asc');
  });
});
// #sort=TABLE:COLUMN:DIR clicks the column's header as a reader would: once for ascending,
// twice for descending.
const m = /sort=(\\w+):(\\w+):(asc|desc)/.exec(location.hash);
const th = m && document.querySelector('#' + m[1] + ' th[data-key="' + m[2] + '"]');
if (th) { th.click(); if (m[3] === 'desc') th.click(); }
document.body.dataset.ready = '1';
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{style}</style></head>
<body>
<h1>{title}</h1>
<p class="summary">{summary}</p>
{notes}
<div class="graph">{svg}</div>
<h2>Layers</h2>
<p>Click a column to sort; * marks layers computed in place. Hover a node in the graph for its
parameters and output shapes.</p>
{layers}
<h2>Blocks</h2>
{blocks}
<script>{script}</script>
</body></html>
"""
