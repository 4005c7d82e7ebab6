"""Small self-contained SVG figures drawn from what a check observed (results.json evidence).

Each figure says in a picture what its check measured: the traffic split against the weights,
the endpoint picker's choices under load, replicas and nodes over time, device utilization
while loaded and after. A check whose evidence lacks the data gets no figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from conformance.results import CheckResult

# Fixed colours: report.html's legend and its screenshot test rely on them.
EXPECTED = "#9aa5b1"  # what the check asked for: weights, even share, chance
OBSERVED = "#1f6feb"  # what the cluster did
HIGHLIGHT = "#d1242f"  # the pod or device the check loaded
SECOND = "#2da44e"  # a second observed series (desired replicas, after load)

WIDTH, HEIGHT, PAD = 420, 220, 40


@dataclass(frozen=True)
class Figure:
    name: str  # file stem, e.g. "weighted-split"
    title: str
    svg: str


def _frame(title: str, body: list[str], legend: Sequence[tuple[str, str]]) -> str:
    keys = [
        f'<rect x="{PAD + i * 130}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>'
        f'<text x="{PAD + i * 130 + 14}" y="{HEIGHT - 5}" font-size="11">{escape(label)}</text>'
        for i, (label, colour) in enumerate(legend)
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" role="img">'
        f"<title>{escape(title)}</title>"
        f'<text x="{PAD}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>'
        f'<line x1="{PAD}" y1="{HEIGHT - 40}" x2="{WIDTH - 10}" y2="{HEIGHT - 40}" '
        'stroke="#444"/>' + "".join(body) + "".join(keys) + "</svg>"
    )


def bars(
    title: str,
    groups: Sequence[tuple[str, Sequence[tuple[float, str]]]],
    legend: Sequence[tuple[str, str]],
    *,
    line: tuple[float, str] | None = None,
) -> str:
    """Grouped bars: per group label, (value, colour) bars; an optional reference line."""
    top = max([v for _, series in groups for v, _ in series] + [line[0] if line else 0, 1e-9])
    plot_h, base = HEIGHT - 70, HEIGHT - 40
    slot = (WIDTH - PAD - 10) / max(len(groups), 1)
    body: list[str] = []
    for i, (label, series) in enumerate(groups):
        width = slot * 0.8 / max(len(series), 1)
        for j, (value, colour) in enumerate(series):
            h = plot_h * value / top
            x = PAD + i * slot + slot * 0.1 + j * width
            body.append(
                f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{width:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(label)}: {value:g}</title></rect>'
            )
        body.append(
            f'<text x="{PAD + i * slot + slot / 2:.1f}" y="{base + 13}" font-size="10" '
            f'text-anchor="middle">{escape(label[:24])}</text>'
        )
    if line:
        y = base - plot_h * line[0] / top
        body.append(
            f'<line x1="{PAD}" y1="{y:.1f}" x2="{WIDTH - 10}" y2="{y:.1f}" stroke="{line[1]}" '
            'stroke-dasharray="4 3" stroke-width="2"/>'
        )
    return _frame(title, body, legend)


def steps(
    title: str,
    series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
) -> str:
    """Step lines over time: (label, colour, [(t, value)]) each."""
    points = [p for _, _, pts in series for p in pts]
    t_max = max([t for t, _ in points] + [1e-9])
    v_max = max([v for _, v in points] + [1.0])
    plot_w, plot_h, base = WIDTH - PAD - 10, HEIGHT - 70, HEIGHT - 40
    body = [
        f'<text x="{PAD - 4}" y="{base - plot_h + 4}" font-size="10" text-anchor="end">'
        f"{v_max:g}</text>",
        f'<text x="{WIDTH - 10}" y="{base + 13}" font-size="10" text-anchor="end">'
        f"{t_max:g} s</text>",
    ]
    for _label, colour, pts in series:
        path: list[str] = []
        for n, (t, v) in enumerate(pts):
            x, y = PAD + plot_w * t / t_max, base - plot_h * v / v_max
            path.append(f"{'M' if n == 0 else 'H'}{x:.1f}" + (f" V{y:.1f}" if n else f" {y:.1f}"))
        body.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="3"/>')
    return _frame(title, body, [(label, colour) for label, colour, _ in series])


def _weighted_split(observed: dict[str, Any]) -> Figure | None:
    split = observed.get("split") or {}
    weights, counts = split.get("weights") or {}, split.get("counts") or {}
    if not weights or not counts:
        return None
    total_w, total_c = sum(weights.values()) or 1, sum(counts.values()) or 1
    groups = [
        (name, [(100 * w / total_w, EXPECTED), (100 * counts.get(name, 0) / total_c, OBSERVED)])
        for name, w in weights.items()
    ]
    svg = bars("Traffic share per backend (%)", groups,
               [("route weight", EXPECTED), ("requests served", OBSERVED)])  # fmt: skip
    return Figure("weighted-split", "Traffic split per backend against the route's weights", svg)


def _served(observed: dict[str, Any], client: str) -> dict[str, int]:
    return dict((observed.get(f"traffic_{client}") or {}).get("pods") or {})


def _load_aware(observed: dict[str, Any]) -> Figure | None:
    busy, served = observed.get("busy_pod") or {}, _served(observed, "load-client")
    if not busy or not served:
        return None
    before = _served(observed, "baseline-client")
    pods = sorted({*served, *before, str(busy.get("pod"))})
    loaded = str(busy.get("pod"))
    groups = [
        (pod, [(before.get(pod, 0), EXPECTED),
               (served.get(pod, 0), HIGHLIGHT if pod == loaded else OBSERVED)])
        for pod in pods
    ]  # fmt: skip
    svg = bars("Requests per pod, before and with one pod loaded", groups,
               [("before loading", EXPECTED), ("loaded pod", HIGHLIGHT), ("other pods", OBSERVED)],
               line=(float(busy.get("even_share") or 0) / 2, HIGHLIGHT))  # fmt: skip
    return Figure("picker-under-load", "The endpoint picker's choices with one pod loaded", svg)


def _prefix_affinity(observed: dict[str, Any]) -> Figure | None:
    affinity = observed.get("affinity") or {}
    served = dict(affinity.get("served") or _served(observed, "prefix-client"))
    if not affinity or not served:
        return None
    control = _served(observed, "control-client")
    total = sum(served.values()) or 1
    pods = sorted({*served, *control})
    groups = [(pod, [(served.get(pod, 0), OBSERVED), (control.get(pod, 0), SECOND)])
              for pod in pods]  # fmt: skip
    chance = float(affinity.get("chance") or 0) * total
    svg = bars("Requests per pod: one shared prefix, and a control", groups,
               [("shared prefix", OBSERVED), ("no shared prefix", SECOND), ("chance", EXPECTED)],
               line=(chance, EXPECTED))  # fmt: skip
    return Figure("prefix-affinity", "Requests sharing a prompt prefix, per pod", svg)


def _replicas(observed: dict[str, Any]) -> Figure | None:
    history = observed.get("replica_history") or []
    if len(history) < 2:
        return None
    current = [(float(h["t_s"]), float(h["current"] or 0)) for h in history]
    desired = [(float(h["t_s"]), float(h["desired"] or 0)) for h in history]
    svg = steps("HPA replicas over time",
                [("current", OBSERVED, current), ("desired", SECOND, desired)])  # fmt: skip
    return Figure("hpa-replicas", "HorizontalPodAutoscaler replicas over time", svg)


def _nodes(observed: dict[str, Any]) -> Figure | None:
    history = observed.get("node_history") or []
    if len(history) < 2:
        return None
    nodes = [(float(h["t_s"]), float(h["nodes"])) for h in history]
    svg = steps("Accelerator nodes over time", [("nodes", OBSERVED, nodes)])
    return Figure("node-count", "Accelerator node count over time", svg)


def _utilization(observed: dict[str, Any]) -> Figure | None:
    history = observed.get("utilization_history") or []
    loaded = int(observed.get("utilization_loaded_samples") or len(history))
    devices = sorted({d for reading in history for d in reading})
    if not history or not devices:
        return None

    def mean(readings: list[dict[str, Any]], device: str) -> float:
        values = [float(r.get(device) or 0) for r in readings if device in r]
        return sum(values) / len(values) if values else 0.0

    during, after = history[:loaded], history[loaded:]
    groups = [(d[:12], [(mean(during, d), HIGHLIGHT), (mean(after, d), SECOND)]) for d in devices]
    svg = bars("Device utilization (%)", groups,
               [("while loaded", HIGHLIGHT), ("after the load", SECOND)])  # fmt: skip
    return Figure("utilization", "Per-device utilization while loaded and after", svg)


FIGURES: dict[str, Callable[[dict[str, Any]], Figure | None]] = {
    "gateway-api.weighted-split": _weighted_split,
    "inference-pool.load-aware": _load_aware,
    "inference-pool.prefix-affinity": _prefix_affinity,
    "pod-autoscaling.custom-metric": _replicas,
    "cluster-autoscaling.accelerator-group": _nodes,
    "accelerator-metrics.utilization-follows-load": _utilization,
}


def figure_of(check: CheckResult) -> Figure | None:
    draw = FIGURES.get(check.id)
    try:
        return draw(check.observed) if draw else None
    except (TypeError, ValueError, KeyError, AttributeError):
        return None  # evidence of an older or foreign shape: no picture rather than no report
