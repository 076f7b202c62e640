"""The one owner of grafana-foundation-sdk: panels, queries, variables and dashboards.

Dashboard modules describe *what* a panel shows (title, description, unit, queries); this module
decides *how* Grafana gets it, so every panel shares one datasource reference, one legend style
and one tooltip, and the rules the lint tests enforce (a unit and a description on every panel,
a datasource variable, no editable dashboards) are arguments here, not habits.

Why the SDK: it is Grafana Labs' own, generated from Grafana's schemas, so the JSON it writes is
the JSON Grafana reads. We use the classic (v1) dashboard model, which is what file provisioning,
the ConfigMap sidecar and grafana.com consume; the SDK marks it deprecated in favour of v2 with a
DeprecationWarning at import time, which we silence here and nowhere else.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import (
        bargauge,
        prometheus,
        stat,
        statetimeline,
        table,
        text,
        timeseries,
    )
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders.common import (
        ReduceDataOptions,
        StackingConfig,
        VizLegendOptions,
        VizTooltipOptions,
    )
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models import dashboard as model
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat
    from grafana_foundation_sdk.models.text import TextMode

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "nvidia-gpu"

PanelBuilder = Any  # the SDK's panel builders share no public base type


@dataclass(frozen=True)
class Query:
    """One PromQL target. `instant` for stats, tables and gauges (the latest value, never a
    reduction over the range); range queries for time series."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False  # format=table: one row per series, labels as columns


@dataclass(frozen=True)
class Step:
    """A threshold step: from `value` (None: the base) on, the colour."""

    value: float | None
    color: str


@dataclass(frozen=True)
class Link:
    """A link to another dashboard of ours, carrying the variables and the time range."""

    title: str
    uid: str
    params: str = ""  # extra query string, e.g. "var-gpu=${__data.fields.uuid}"

    def url(self) -> str:
        extra = f"&{self.params}" if self.params else ""
        variables = "${datasource:queryparam}&${cluster:queryparam}"
        return f"/d/{self.uid}?{variables}{extra}&${{__url_time_range}}"


@dataclass
class Options:
    """Optional settings shared by every panel kind."""

    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    steps: Sequence[Step] = ()
    mappings: dict[str, tuple[str, str]] = field(default_factory=dict)  # value -> (text, color)
    links: Sequence[Link] = ()
    no_value: str | None = None


def _target(query: Query, ref: str) -> prometheus.Dataquery:
    target = (
        prometheus.Dataquery()
        .expr(query.expr)
        .ref_id(ref)
        .legend_format(query.legend or "__auto")
        .datasource(DATASOURCE)
    )
    target = target.instant() if query.instant else target.range()
    if query.table:
        target = target.format(PromQueryFormat.TABLE)
    return target


def _refs() -> Iterable[str]:
    yield from "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _common(
    panel: PanelBuilder,
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    o: Options,
) -> PanelBuilder:
    if not description.strip():
        raise ValueError(f"panel {title!r} has no description")
    panel = (
        panel.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(o.height)
        .span(o.width)
    )
    for query, ref in zip(queries, _refs(), strict=False):
        panel = panel.with_target(_target(query, ref))
    if o.min is not None:
        panel = panel.min(o.min)
    if o.max is not None:
        panel = panel.max(o.max)
    if o.decimals is not None:
        panel = panel.decimals(o.decimals)
    if o.steps:
        panel = panel.thresholds(
            dash.ThresholdsConfig()
            .mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=s.value, color=s.color) for s in o.steps])
        )
    if o.mappings:
        panel = panel.mappings([_value_map(o.mappings)])
    if o.links:
        panel = panel.data_links(
            [
                dash.DashboardLink(link.title).type(model.DashboardLinkType.LINK).url(link.url())
                for link in o.links
            ]
        )
    if o.no_value is not None:
        panel = panel.no_value(o.no_value)
    return panel


def _value_map(mappings: dict[str, tuple[str, str]]) -> model.ValueMap:
    return model.ValueMap(
        options={
            value: model.ValueMappingResult(text=text_, color=color, index=i)
            for i, (value, (text_, color)) in enumerate(sorted(mappings.items()))
        }
    )


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    options: Options | None = None,
    stacked: bool = False,
) -> PanelBuilder:
    """Lines per series, legend as a table with the last and max values (the on-call question
    is "what is it now, and how bad did it get")."""
    o = options or Options()
    panel = (
        timeseries.Panel()
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.PALETTE_CLASSIC))
    )
    if stacked:
        panel = panel.stacking(StackingConfig().mode(common.StackingMode.NORMAL))
    return _common(panel, title, description, unit, queries, o)


def stat_panel(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    options: Options | None = None,
) -> PanelBuilder:
    """One number per series from an instant query (the latest value, never a range sum)."""
    o = options or Options(width=4, height=4)
    panel = (
        stat.Panel()
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return _common(panel, title, description, unit, [_as_instant(q) for q in queries], o)


def bar_panel(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    options: Options | None = None,
) -> PanelBuilder:
    """Horizontal bars, one per series, from an instant query: rankings and shares."""
    o = options or Options()
    panel = (
        bargauge.Panel()
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return _common(panel, title, description, unit, [_as_instant(q) for q in queries], o)


def table_panel(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    options: Options | None = None,
    columns: dict[str, str] | None = None,
    column_units: dict[str, str] | None = None,
    column_mappings: dict[str, dict[str, tuple[str, str]]] | None = None,
) -> PanelBuilder:
    """A table from instant queries, one row per GPU: the queries are merged on their shared
    labels (Grafana's "merge" transformation), `columns` picks and renames the columns in
    order (label or `Value #<refId>` -> header), the rest are hidden. `column_units` and
    `column_mappings` (value -> (text, colour)) apply to one column by its header."""
    o = options or Options(width=24, height=8)
    panel = table.Panel().filterable(True).show_header(True)
    qs = [_as_instant(q, as_table=True) for q in queries]
    panel = panel.with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
    if columns:
        index = {name: i for i, name in enumerate(columns)}
        panel = panel.with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "includeByName": dict.fromkeys(columns, True),
                    "indexByName": index,
                    "renameByName": dict(columns),
                },
            )
        )
    for column, unit_ in sorted((column_units or {}).items()):
        panel = panel.override_by_name(
            column, [model.DynamicConfigValue(id_val="unit", value=unit_)]
        )
    for column, mapping in sorted((column_mappings or {}).items()):
        panel = panel.override_by_name(
            column, [model.DynamicConfigValue(id_val="mappings", value=[_value_map(mapping)])]
        )
    return _common(panel, title, description, unit, qs, o)


def state_panel(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    options: Options | None = None,
) -> PanelBuilder:
    """A state timeline: one row per series, coloured by value mappings (throttle reasons,
    P-states, Xids over time)."""
    o = options or Options(width=24, height=8)
    panel = (
        statetimeline.Panel()
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .fill_opacity(80)
        .legend(
            VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    return _common(panel, title, description, unit, queries, o)


def text_panel(title: str, content: str, width: int = 24, height: int = 3) -> PanelBuilder:
    """Markdown for the few places where a sentence beats a chart."""
    return (
        text.Panel()
        .title(title)
        .description(content.splitlines()[0])
        .mode(TextMode.MARKDOWN)
        .content(content)
        .height(height)
        .span(width)
    )


def _as_instant(query: Query, as_table: bool = False) -> Query:
    return Query(query.expr, query.legend, instant=True, table=as_table or query.table)


# -- variables ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """A query variable. `query` is `label_values(<series selector>, <label>)`."""

    name: str
    label: str
    query: str
    multi: bool = True
    include_all: bool = True
    all_value: str = ".+"
    hidden: bool = False


def _variable(v: Variable) -> dash.QueryVariable:
    builder = (
        dash.QueryVariable(v.name)
        .label(v.label)
        .datasource(DATASOURCE)
        .query(v.query)
        .definition(v.query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(v.multi)
        .include_all(v.include_all)
    )
    if v.include_all:
        builder = builder.all_value(v.all_value)
    if v.hidden:
        builder = builder.hide(model.VariableHide.HIDE_VARIABLE)
    return builder


# -- dashboards -----------------------------------------------------------------------------


@dataclass
class Section:
    """A row and its panels."""

    title: str
    panels: list[PanelBuilder]


@dataclass
class DashboardSpec:
    uid: str
    title: str
    description: str
    variables: list[Variable]
    sections: list[Section]
    refresh: str = "30s"
    time_from: str = "now-6h"


def build(spec: DashboardSpec) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a dict)."""
    builder = (
        dash.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags([TAG])
        .refresh(spec.refresh)
        .time(spec.time_from, "now")
        .timezone("browser")
        .readonly()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .link(
            dash.DashboardLink("NVIDIA GPU dashboards")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .with_variable(
            dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
    )
    for variable in spec.variables:
        builder = builder.with_variable(_variable(variable))
    for section in spec.sections:
        builder = builder.with_row(dash.Row(section.title))
        for panel in section.panels:
            builder = builder.with_panel(panel)
    encoded = JSONEncoder(sort_keys=True, indent=2).encode(builder.build())
    result: dict[str, Any] = json.loads(encoded)
    _lay_out(result["panels"])
    for link in result["links"]:
        # Grafana 12 reads "inControlsMenu" as "hide it in a menu"; we want the links in view.
        link.pop("placement", None)
    for index, panel in enumerate(result["panels"], start=1):
        panel["id"] = index  # stable ids: panel links (viewPanel=N) survive regeneration
    return result


def _lay_out(panels: list[dict[str, Any]]) -> None:
    """Place panels left to right, wrapping at Grafana's 24 columns, each row on a new line.

    The SDK's own placement lets a panel start past column 0 even when it does not fit."""
    x = y = line_height = 0
    for panel in panels:
        pos = panel["gridPos"]
        if panel["type"] == "row":
            y += line_height
            panel["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
            x, y, line_height = 0, y + 1, 0
            continue
        if x + pos["w"] > 24:
            x, y, line_height = 0, y + line_height, 0
        panel["gridPos"] = {"h": pos["h"], "w": pos["w"], "x": x, "y": y}
        x += pos["w"]
        line_height = max(line_height, pos["h"])


def encode(dashboard: dict[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, a final newline (byte-for-byte reproducible)."""
    return json.dumps(dashboard, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
