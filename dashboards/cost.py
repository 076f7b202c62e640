"""Cost and waste: GPU-hours per namespace, idle-while-allocated hours, unused capacity, and
what they cost, plus the whole GPUs whose pods would fit in a MIG device.

Prices are set in ONE place, the recording rule gpu:nvidia_gpu_price_usd_per_hour in
alerts/rules/cost.yaml (on-demand list prices by default). Who holds how much of a GPU is the
recording rule gpu_pod:nvidia_gpu_share:ratio of the same file: a whole GPU is 1 split among
the pods time-sharing it, a MIG device the share of its parent's memory it owns, so a parent
and its MIG devices are never both billed.

Totals over the dashboard's time range integrate those rules with a one-minute subquery,
`sum_over_time(<share>[$__range:1m]) / 60`: one sample a minute whatever the scrape and
evaluation intervals, so GPU-hours do not change when someone changes the scrape interval.
These `$__range` windows are deliberate (the lint allows them on this dashboard only).
"""

from __future__ import annotations

from dashboards import common as c
from dashboards.panels import (
    DashboardSpec,
    Options,
    Query,
    Section,
    Step,
    bar_panel,
    stat_panel,
    table_panel,
    text_panel,
    timeseries_panel,
)

SHARE = f"gpu_pod:nvidia_gpu_share:ratio{{{c.POD_SEL}}}"
COST = f"gpu_pod:nvidia_gpu_cost_usd_per_hour{{{c.POD_SEL}}}"
PRICE = f"gpu:nvidia_gpu_price_usd_per_hour{{{c.NODE_SEL}}}"
IDLE_BELOW = 0.05
# 1 while the GPU's utilization (busy-time counter over the rate interval, the gauge on older
# exporters) is under 5 %, 0 otherwise; absent for MIG-enabled GPUs (NVML reports no
# utilization for them), so their MIG devices never count as idle.
IDLE_FLAG = f"{c.utilization(by='cluster, node, uuid')} < bool {IDLE_BELOW}"
MIG_CANDIDATE_BELOW = 0.2
PRICES_FROM = (
    "Prices come from gpu:nvidia_gpu_price_usd_per_hour in alerts/rules/cost.yaml (on-demand "
    "list prices per GPU-hour unless you changed them); GPU models without a price there count "
    "GPU-hours but no cost."
)
RANGE_NOTE = "Over the dashboard's time range (one sample a minute, whatever the scrape interval)."
MIG_NOTE = (
    "MIG devices have no utilization in NVML, so they never count as idle (their hours and "
    "cost count in full)."
)


def idle(expr: str) -> str:
    """`expr` (per pod share or cost) while its GPU is idle, 0 while busy."""
    return f"{expr}\n  * on (cluster, node, uuid) group_left ()\n  ({IDLE_FLAG})"


def hours(expr: str, by: str = "") -> str:
    """Integral of `expr` (per hour) over the dashboard's range: GPU-hours, or USD for a cost
    rate. One-minute steps, so the result is independent of the scrape interval."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (sum_over_time(({expr})[$__range:1m])) / 60"


def unallocated() -> str:
    """GPU equivalents no pod holds, per GPU or MIG device, with the model: a whole GPU 1, a
    MIG device its share of the parent's memory. Only GPUs that answer, and only where the
    exporter reads the kubelet (nvidia_gpu_allocated); 0 where a pod holds it."""
    whole = f'1 - max by (cluster, node, uuid) (nvidia_gpu_allocated{{{c.NODE_SEL}, mig_uuid=""}})'
    mig = (
        "(1 - max by (cluster, node, uuid, mig_uuid) "
        f'(nvidia_gpu_allocated{{{c.NODE_SEL}, mig_uuid!=""}}))\n'
        "      * on (cluster, node, uuid, mig_uuid) group_left ()\n"
        "      (\n"
        "          max by (cluster, node, uuid, mig_uuid) "
        f"(nvidia_gpu_mig_memory_total_bytes{{{c.NODE_SEL}}})\n"
        "        / on (cluster, node, uuid) group_left ()\n"
        f"          max by (cluster, node, uuid) (nvidia_gpu_memory_total_bytes{{{c.NODE_SEL}}})\n"
        "      )"
    )
    return (
        f"(\n    (\n        ({whole})\n      or\n        ({mig})\n    )\n"
        "  and on (cluster, node, uuid)\n"
        f"    (max by (cluster, node, uuid) (nvidia_gpu_up{{{c.NODE_SEL}}}) == 1)\n)\n"
        "* on (cluster, node, uuid) group_left (model)\n"
        f"  group by (cluster, node, uuid, model) (nvidia_gpu_info{{{c.NODE_SEL}}})"
    )


def unallocated_cost() -> str:
    return f"({unallocated()})\n* on (cluster, node, uuid) group_left ()\n  {PRICE}"


def _summary() -> Section:
    blue = [Step(None, "blue")]
    waste = [Step(None, "green"), Step(1, "orange")]
    return Section(
        "Over the dashboard range",
        [
            stat_panel(
                "GPU-hours held",
                "GPU-hours the selected pods held: a whole GPU for an hour is 1, two pods "
                "time-sharing it 0.5 each, a MIG device its share of the parent's memory. "
                + RANGE_NOTE,
                "h",
                Query(f"{hours(SHARE)} or vector(0)"),
                options=Options(width=4, height=4, decimals=1, steps=blue),
            ),
            stat_panel(
                "Cost of GPU-hours held",
                "What the GPU-hours held cost at the configured prices. " + PRICES_FROM,
                "currencyUSD",
                Query(f"{hours(COST)} or vector(0)"),
                options=Options(width=4, height=4, decimals=2, steps=blue),
            ),
            stat_panel(
                "Idle-while-allocated GPU-hours",
                f"GPU-hours pods held while their GPU's utilization was under "
                f"{IDLE_BELOW:.0%}: reserved, paid for and doing nothing. {MIG_NOTE} " + RANGE_NOTE,
                "h",
                Query(f"{hours(idle(SHARE))} or vector(0)"),
                options=Options(width=4, height=4, decimals=1, steps=waste),
            ),
            stat_panel(
                "Idle-while-allocated cost",
                "What the idle-while-allocated GPU-hours cost. " + PRICES_FROM,
                "currencyUSD",
                Query(f"{hours(idle(COST))} or vector(0)"),
                options=Options(width=4, height=4, decimals=2, steps=waste),
            ),
            stat_panel(
                "Unallocated GPU-hours",
                "GPU-hours of answering GPUs and MIG devices that no pod held (capacity nobody "
                "used), on nodes where the exporter reads the kubelet. Not filtered by "
                "namespace: unallocated capacity belongs to none. " + RANGE_NOTE,
                "h",
                Query(f"{hours(unallocated())} or vector(0)"),
                options=Options(width=4, height=4, decimals=1, steps=blue),
            ),
            stat_panel(
                "Cost rate now",
                "USD per hour the selected pods' GPUs cost right now (an instant value, not a "
                "total over the range). " + PRICES_FROM,
                "currencyUSD",
                Query(f"sum({COST}) or vector(0)"),
                options=Options(width=4, height=4, decimals=2, steps=blue),
            ),
        ],
    )


def _by_namespace() -> Section:
    return Section(
        "By namespace",
        [
            bar_panel(
                "GPU-hours per namespace",
                "GPU-hours each namespace held (time-shared GPUs split among their pods, MIG "
                "devices by their share of the parent). " + RANGE_NOTE,
                "h",
                Query(hours(SHARE, "namespace"), "{{namespace}}"),
                options=Options(width=8, height=8, min=0, decimals=1),
            ),
            bar_panel(
                "Cost per namespace",
                "What each namespace's GPU-hours cost at the configured prices. "
                + PRICES_FROM
                + " "
                + RANGE_NOTE,
                "currencyUSD",
                Query(hours(COST, "namespace"), "{{namespace}}"),
                options=Options(width=8, height=8, min=0, decimals=2),
            ),
            timeseries_panel(
                "Cost rate per namespace",
                "USD per hour each namespace's GPUs cost, over time, stacked: a step up is a "
                "pod starting on a GPU. " + PRICES_FROM,
                "currencyUSD",
                Query(f"sum by (namespace) ({COST})", "{{namespace}}"),
                options=Options(width=8, height=8, min=0),
                stacked=True,
            ),
            bar_panel(
                "Idle-while-allocated GPU-hours per namespace",
                f"GPU-hours each namespace held on GPUs whose utilization was under "
                f"{IDLE_BELOW:.0%} (0 for a namespace whose GPUs were always busy). {MIG_NOTE} "
                + RANGE_NOTE,
                "h",
                Query(hours(idle(SHARE), "namespace"), "{{namespace}}"),
                options=Options(width=8, height=8, min=0, decimals=1),
            ),
            bar_panel(
                "Idle-while-allocated cost per namespace",
                "What each namespace's idle-while-allocated GPU-hours cost: the money to win "
                "back by releasing idle GPUs. " + PRICES_FROM,
                "currencyUSD",
                Query(hours(idle(COST), "namespace"), "{{namespace}}"),
                options=Options(width=8, height=8, min=0, decimals=2),
            ),
            bar_panel(
                "Cost rate now per namespace and model",
                "USD per hour each namespace spends now, per GPU model. " + PRICES_FROM,
                "currencyUSD",
                Query(f"sum by (namespace, model) ({COST})", "{{namespace}} {{model}}"),
                options=Options(width=8, height=8, min=0, decimals=2),
            ),
        ],
    )


def _capacity() -> Section:
    return Section(
        "Capacity nobody uses",
        [
            bar_panel(
                "Unallocated GPU-hours by model",
                "GPU-hours of answering GPUs (and MIG devices, by their share of the parent) "
                "that no pod held, per model: capacity bought and not scheduled. Only nodes "
                "where the exporter reads the kubelet count. " + RANGE_NOTE,
                "h",
                Query(hours(unallocated(), "model"), "{{model}}"),
                options=Options(width=8, height=8, min=0, decimals=1),
            ),
            bar_panel(
                "Cost of unallocated capacity by model",
                "What the unallocated GPU-hours cost, per model. " + PRICES_FROM,
                "currencyUSD",
                Query(hours(unallocated_cost(), "model"), "{{model}}"),
                options=Options(width=8, height=8, min=0, decimals=2),
            ),
            timeseries_panel(
                "Unallocated GPUs by model",
                "GPU equivalents no pod holds, per model, over time (a free MIG device counts "
                "its share of the parent). A floor that never reaches 0 is spare capacity.",
                "short",
                Query(f"sum by (model) ({unallocated()})", "{{model}}"),
                options=Options(width=8, height=8, min=0),
            ),
        ],
    )


def range_utilization() -> str:
    """Average utilization per GPU over the dashboard's range: busy over sampled seconds of
    the busy-time counters (alias-free), or the gauge's average where they are missing."""

    def increase(counter: str) -> str:
        return (
            f"max by (cluster, node, uuid) "
            f'(increase({counter}{{{c.NODE_SEL}, engine="gpu"}}[$__range]))'
        )

    busy, sampled = increase(c.BUSY_SECONDS), increase(c.SAMPLED_SECONDS)
    gauge = (
        "max by (cluster, node, uuid) "
        f"(avg_over_time(nvidia_gpu_utilization_ratio{{{c.NODE_SEL}}}[$__range]))"
    )
    return f"(\n  {busy}\n    / on (cluster, node, uuid)\n  ({sampled} > 0)\nor\n  {gauge}\n)"


def _mig_candidates() -> Section:
    held = (
        "group by (cluster, node, gpu, uuid, namespace, pod) "
        f'(nvidia_gpu_pod_info{{{c.POD_SEL}, mig_uuid=""}})'
    )
    total = f"max by (cluster, node, uuid) (nvidia_gpu_memory_total_bytes{{{c.NODE_SEL}}})"
    util_avg = range_utilization()
    mem_avg = (
        "max by (cluster, node, uuid) "
        f"(avg_over_time(nvidia_gpu_memory_used_bytes{{{c.NODE_SEL}}}[$__range]))"
        f"\n  / on (cluster, node, uuid)\n  {total}"
    )
    mem_peak = (
        "max by (cluster, node, uuid) "
        f"(max_over_time(nvidia_gpu_memory_used_bytes{{{c.NODE_SEL}}}[$__range]))"
    )
    candidate = (
        f"({util_avg} < {MIG_CANDIDATE_BELOW})\n"
        f"  and on (cluster, node, uuid)\n  ({mem_avg} < {MIG_CANDIDATE_BELOW})"
    )

    def column(value: str) -> str:
        return (
            f"(\n  {held}\n  * on (cluster, node, uuid) group_left ()\n  ({value})\n)\n"
            f"and on (cluster, node, uuid)\n({candidate})"
        )

    with_model = (
        f"(\n{column(util_avg)}\n)\n* on (cluster, node, uuid) group_left (model)\n"
        f"  group by (cluster, node, uuid, model) (nvidia_gpu_info{{{c.NODE_SEL}}})"
    )
    pod_hours = (
        "max by (cluster, node, gpu, uuid, namespace, pod) "
        f'(sum_over_time(gpu_pod:nvidia_gpu_share:ratio{{{c.POD_SEL}, mig_uuid=""}}'
        "[$__range:1m])) / 60"
    )
    return Section(
        "MIG candidates",
        [
            table_panel(
                "MIG candidates: whole GPUs their pods barely use",
                f"Whole GPUs held by the selected pods whose average utilization AND average "
                f"memory use over the dashboard's range both stayed under "
                f"{MIG_CANDIDATE_BELOW:.0%}: the pod would fit in a MIG device (or share a "
                "time-sliced GPU), freeing the rest. Set the time range to several days; an "
                "hour proves nothing. Peak memory tells which profile fits (under 10 GB: "
                "1g.10gb on an A100 80GB). Empty on a healthy node: every held GPU is used "
                "above the threshold, or no pod holds a whole GPU. Click a row for the GPU "
                "detail dashboard.",
                "short",
                Query(with_model),
                Query(column(mem_avg)),
                Query(column(mem_peak)),
                Query(column(total)),
                Query(f"({pod_hours})\nand on (cluster, node, uuid)\n({candidate})"),
                options=Options(width=24, height=8, links=[c.to_gpu_from_table()]),
                columns={
                    **c.headers("namespace", "pod", "node", "gpu", "uuid", "model"),
                    "Value #A": "Avg utilization",
                    "Value #B": "Avg memory used",
                    "Value #C": "Peak memory used",
                    "Value #D": "Memory size",
                    "Value #E": "GPU-hours held",
                },
                column_units={
                    "Avg utilization": "percentunit",
                    "Avg memory used": "percentunit",
                    "Peak memory used": "bytes",
                    "Memory size": "bytes",
                    "GPU-hours held": "h",
                },
            ),
        ],
    )


def _prices() -> Section:
    priced = f"group by (cluster, node, uuid, model) (nvidia_gpu_info{{{c.NODE_SEL}}})"
    return Section(
        "Prices",
        [
            bar_panel(
                "Price per GPU-hour by model",
                "The price each GPU model is billed at, per GPU-hour, as the recording rule "
                "gpu:nvidia_gpu_price_usd_per_hour in alerts/rules/cost.yaml sets it (the one "
                "place to change prices). A MIG device costs its share of this.",
                "currencyUSD",
                Query(f"max by (model) ({PRICE})", "{{model}}"),
                options=Options(width=8, height=7, min=0, decimals=2),
            ),
            bar_panel(
                "GPU models without a price",
                "GPUs per model that no line of gpu:nvidia_gpu_price_usd_per_hour matches: "
                "their GPU-hours count above, their cost does not. Add a line for the model to "
                "alerts/rules/cost.yaml. Empty on a healthy node: every GPU model on the "
                "selected nodes has a price.",
                "short",
                Query(
                    f"count by (model) (\n  {priced}\n  unless on (cluster, node, uuid)\n"
                    f"  {PRICE}\n)",
                    "{{model}}",
                ),
                options=Options(width=8, height=7, min=0),
            ),
            text_panel(
                "Where the numbers come from",
                "Prices: `gpu:nvidia_gpu_price_usd_per_hour` in **alerts/rules/cost.yaml**, "
                "one line per model, first match wins (defaults: on-demand cloud list "
                "prices; T4 0.53, A10G 1.01, L4 0.80, A100 40GB 32.77/8, A100 80GB 40.97/8, "
                "H100 98.32/8 USD per GPU-hour). Shares: `gpu_pod:nvidia_gpu_share:ratio`, "
                "a whole GPU split among its pods, a MIG device by its share of the parent's "
                f"memory. Idle: GPU utilization under {IDLE_BELOW:.0%}. Totals integrate one "
                "sample a minute over the time range.",
                width=8,
                height=7,
            ),
        ],
    )


def spec() -> DashboardSpec:
    return DashboardSpec(
        uid=c.COST,
        title=c.TITLE_PREFIX + "Cost and waste",
        description=(
            "GPU-hours and cost per namespace, idle-while-allocated hours, capacity nobody "
            "uses, and MIG candidates; prices are set in alerts/rules/cost.yaml."
        ),
        variables=[c.CLUSTER, c.NODE_VAR, c.NAMESPACE_VAR],
        sections=[_summary(), _by_namespace(), _capacity(), _mig_candidates(), _prices()],
        time_from="now-7d",
    )
