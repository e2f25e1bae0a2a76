#!/usr/bin/python3
"""Renders the panels of dashboard.json to one PNG, from a live Prometheus, with matplotlib.

There is no Grafana here: this sends every panel's expressions (with the pool and rate interval
substituted, as Grafana would) to Prometheus's range-query API and draws what comes back, one
subplot a panel. tests/prometheus.rs runs it against the Prometheus of its test run; run by hand:

    scripts/prometheus/render-dashboard.py --prometheus http://127.0.0.1:9090 \
        --start 1700000000 --end 1700000300 --out docs/dashboard.png

Needs Debian's python3-matplotlib (apt-get install python3-matplotlib).
"""

import argparse
import json
import math
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, PercentFormatter
except ImportError:
    sys.exit(
        "render-dashboard.py: matplotlib is missing: install it with "
        "\"apt-get install python3-matplotlib\" and run this with /usr/bin/python3"
    )

HERE = Path(__file__).resolve().parent
COLUMNS = 4


def panels(dashboard):
    """Every panel that is not a row, rows' nested panels included, in order."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panels(panel)
        else:
            yield panel


def substitute(expr, pool, rate_interval):
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("${pool}", pool)
        .replace("$pool", pool)
    )


def query_range(prometheus, expr, start, end, step):
    query = urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step}
    )
    url = f"{prometheus}/api/v1/query_range?{query}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        sys.exit(f"render-dashboard.py: Prometheus refused {expr!r}: {error.read().decode()}")
    except urllib.error.URLError as error:
        sys.exit(
            f"render-dashboard.py: cannot reach Prometheus at {prometheus} "
            f"(--prometheus): {error.reason}"
        )
    return body["data"]["result"]


def legend(template, labels):
    text = template
    for name, value in labels.items():
        text = text.replace("{{" + name + "}}", value)
    return text


def series_of(prometheus, panel, args, step):
    """(legend, times relative to --start, values) for every series of every target."""
    out = []
    for target in panel.get("targets", []):
        expr = substitute(target["expr"], args.pool, args.rate_interval)
        result = query_range(prometheus, expr, args.start, args.end, step)
        for series in result:
            times = [float(t) - args.start for t, _ in series["values"]]
            values = [float(v) for _, v in series["values"]]
            out.append((legend(target.get("legendFormat", ""), series["metric"]), times, values))
    # As Grafana's "hide series with only zeros": a list of failure reasons is mostly zeros.
    if len(out) > 3:
        out = [s for s in out if any(v != 0 and not math.isnan(v) for v in s[2])]
    return out


def draw_stat(axes, series, unit):
    last = [s[2][-1] for s in series if s[2]]
    text = "no data"
    if last:
        value = last[0]
        text = f"{value / 60:.1f} min" if unit == "s" else f"{value:g}"
    axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=26, transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def draw_timeseries(axes, series, unit):
    for name, times, values in series:
        axes.plot(times, values, label=name, linewidth=1.2)
    axes.set_xlabel("seconds", fontsize=7)
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)
    if unit == "percentunit":
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.set_ylim(0, 1)
    elif unit == "s":
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * 1000:g} ms"))
    elif unit == "reqps":
        axes.set_ylabel("per second", fontsize=7)
    if series:
        axes.legend(fontsize=6, loc="upper left")
    else:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--dashboard", default=str(HERE / "dashboard.json"))
    parser.add_argument("--pool", default="www", help="the value of the pool variable")
    parser.add_argument("--rate-interval", default="10s", help="the value of $__rate_interval")
    parser.add_argument("--start", type=float, required=True, help="Unix time")
    parser.add_argument("--end", type=float, required=True, help="Unix time")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args()
    if args.end <= args.start:
        sys.exit("render-dashboard.py: --end must be after --start")

    dashboard = json.loads(Path(args.dashboard).read_text())
    shown = list(panels(dashboard))
    rows = math.ceil(len(shown) / COLUMNS)
    figure, grid = plt.subplots(rows, COLUMNS, figsize=(4.2 * COLUMNS, 2.9 * rows), squeeze=False)
    step = max(1.0, (args.end - args.start) / 300)
    for axes, panel in zip(grid.flat, shown):
        series = series_of(args.prometheus.rstrip("/"), panel, args, step)
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        axes.set_title(panel.get("title", ""), fontsize=9)
        if panel.get("type") == "stat":
            draw_stat(axes, series, unit)
        else:
            draw_timeseries(axes, series, unit)
    for axes in list(grid.flat)[len(shown):]:
        axes.axis("off")
    figure.suptitle(
        f"{dashboard.get('title', '')}, pool {args.pool}: {args.end - args.start:.0f} s of a test run "
        f"(tests/prometheus.rs), drawn from Prometheus by scripts/prometheus/render-dashboard.py",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(args.out, dpi=90)


if __name__ == "__main__":
    main()
