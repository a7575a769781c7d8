#!/usr/bin/env python3
"""Plot a capacity.csv from tuning/capacity.sh as one SVG: memory (server RSS growth, kernel slab
growth, all memory used) and fan-out latency (p50, p99) against connections held.

Python standard library only, so the experiment needs no plotting package. It only reads the
CSV and writes the SVG; it never measures anything.

    tuning/capacity_plot.py docs/capacity/capacity.csv docs/capacity/capacity.svg
"""

import csv
import math
import sys
from xml.sax.saxutils import escape

W, H = 960, 420
PANEL_W, PANEL_H = 380, 300
MARGIN_L, MARGIN_T = 70, 60
GAP = 100
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def num(row, key):
    try:
        return float(row.get(key, "") or "nan")
    except ValueError:
        return float("nan")


def nice_max(v):
    """Smallest round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k) at or above v."""
    if not v or v <= 0 or math.isnan(v):
        return 1.0
    k = 10 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * k >= v:
            return m * k
    return 10 * k


def fmt_count(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def panel(out, x0, title, ylabel, xs, series, xmin, xmax, log_x, labels):
    """One panel: x = connections (log or linear scale), linear y, a polyline per series."""
    ymax = nice_max(max((y for _, ys in series for y in ys if not math.isnan(y)), default=1))
    if not log_x:
        xmin, xmax = 0.0, nice_max(xmax)
    lx0, lx1 = (math.log10(xmin), math.log10(xmax)) if log_x else (xmin, xmax)

    def px(x):
        v = math.log10(x) if log_x else x
        return x0 + (v - lx0) / (lx1 - lx0) * PANEL_W

    def py(y):
        return MARGIN_T + PANEL_H - y / ymax * PANEL_H

    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{MARGIN_T - 25}" text-anchor="middle" '
               f'font-weight="bold">{escape(title)}</text>')
    out.append(f'<rect x="{x0}" y="{MARGIN_T}" width="{PANEL_W}" height="{PANEL_H}" '
               'fill="none" stroke="#444"/>')
    for i in range(6):
        y = ymax * i / 5
        out.append(f'<line x1="{x0}" x2="{x0 + PANEL_W}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
    if log_x:
        ticks = []
        decade = 10 ** math.floor(lx0)
        while decade <= xmax * 1.0001:
            ticks += [decade * m for m in (1, 2, 5) if xmin * 0.999 <= decade * m <= xmax * 1.001]
            decade *= 10
    else:
        ticks = [xmax * i / 5 for i in range(6)]
    for x in ticks:
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{MARGIN_T}" '
                   f'y2="{MARGIN_T + PANEL_H}" stroke="#eee"/>')
        out.append(f'<text x="{px(x):.1f}" y="{MARGIN_T + PANEL_H + 16}" '
                   f'text-anchor="middle">{fmt_count(x)}</text>')
    scale = "log scale" if log_x else "linear scale"
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{MARGIN_T + PANEL_H + 36}" '
               f'text-anchor="middle">connections held ({scale})</text>')
    out.append(f'<text transform="translate({x0 - 50},{MARGIN_T + PANEL_H / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(ylabel)}</text>')
    for i, (name, ys) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        # Negative growth (other processes freed memory meanwhile) is clamped to the axis.
        pts = [(px(x), py(max(y, 0.0)), lab)
               for x, y, lab in zip(xs, ys, labels) if x > 0 and not math.isnan(y)]
        # One line per run (label); points of different runs are not joined.
        for run in dict.fromkeys(lab for _, _, lab in pts):
            mine = [(a, b) for a, b, lab in pts if lab == run]
            if len(mine) > 1:
                path = " ".join(f"{a:.1f},{b:.1f}" for a, b in mine)
                out.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                           'stroke-width="2"/>')
        for a, b, lab in pts:
            out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>')
            if lab:
                out.append(f'<text x="{a + 5:.1f}" y="{b - 5:.1f}" font-size="10" '
                           f'fill="{color}">{escape(lab)}</text>')
        ly = MARGIN_T + 14 + 16 * i
        out.append(f'<line x1="{x0 + 10}" x2="{x0 + 30}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{x0 + 36}" y="{ly}">{escape(name)}</text>')


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: capacity_plot.py CAPACITY.csv OUT.svg")
    with open(argv[1], newline="") as f:
        # Steps that lost something are in the CSV with their reason, but not on the plot.
        rows = [r for r in csv.DictReader(f)
                if num(r, "connections_held") > 0 and r.get("result", "ok").strip('"') == "ok"]
    if not rows:
        sys.exit("capacity_plot.py: no step held any connection; nothing to plot")
    xs = [num(r, "connections_held") for r in rows]
    labels = [r.get("run", "") for r in rows]
    gib = 1 << 30

    def kernel(r):
        # Box-wide slab growth is ours only when the box-wide socket growth matches our own
        # socket count (other processes were quiet); otherwise leave the point out.
        own, grown = num(r, "own_sockets"), num(r, "tcp_sockets_delta")
        if own > 0 and not abs(grown - own) <= own / 10:
            return float("nan")
        return num(r, "slab_delta_bytes") / gib

    memory = [
        ("server RSS growth", [num(r, "server_rss_delta_bytes") / gib for r in rows]),
        ("kernel slab growth (both ends)", [kernel(r) for r in rows]),
    ]
    latency = [
        ("fan-out p50", [num(r, "fanout_p50_ms") for r in rows]),
        ("fan-out p99", [num(r, "fanout_p99_ms") for r in rows]),
    ]
    xmin = 10 ** math.floor(math.log10(min(xs)))
    xmax = max(xs) * 1.15
    if xmax <= xmin * 1.5:
        xmax = xmin * 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    # Memory grows linearly, so a linear axis shows the per-connection cost as a straight line;
    # latency spans decades of connections, so it gets a log axis.
    panel(out, MARGIN_L, "Memory vs connections", "GiB", xs, memory, xmin, xmax, False, labels)
    panel(out, MARGIN_L + PANEL_W + GAP, "Fan-out latency vs connections", "ms", xs, latency,
          xmin, xmax, True, labels)
    out.append("</svg>")
    with open(argv[2], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv)
