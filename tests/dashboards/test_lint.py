"""Lint of the generated dashboards (dashboards/json/*.json) as pytest checks.

grafana/dashboard-linter (a Go binary) cannot be installed on our machines, so its rules that
matter are re-implemented here, each as a function that returns its findings, plus checks of
our own conventions (docs/dashboards.md). Every rule has a self-test below that feeds it a
deliberately bad dashboard, panel or target and asserts the finding, so no rule can pass by
checking nothing; a good example passes every rule, so none flags everything either.

The checks are parametrized over every dashboard, panel and target, and an empty
dashboards/json/ fails `test_dashboards_are_generated` instead of passing vacuously.
"""

from __future__ import annotations

import copy
import functools
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboards.grafana import (
    BUILTIN_VARIABLES,
    DASHBOARD_DIR,
    DATASOURCE_VARIABLE,
    EMPTY_OK,
    EXPECTED_UIDS,
    TAG,
    TEMPLATED_DATASOURCE,
    Dashboard,
    dashboard_paths,
    empty_reason,
    is_query_panel,
    iter_datasources,
    iter_strings,
    label_values_query,
    load_dashboards,
    panel_label,
    panels,
    substitute,
    targets,
    variable_query,
    variable_refs,
    variables,
)
from tests.promql import (
    COUNTER_FUNCTIONS,
    ranges,
    recording_rule_names,
    selectors,
    unknown_names,
)
from tests.tools import require_tool

Problems = list[str]
JSON = dict[str, Any]

# Grafana unit ids (packages/grafana-data/src/valueFormats/categories.ts), the list
# dashboard-linter's panel-units-rule accepts.
VALID_UNITS = frozenset(
    """
    none string short percent percentunit humidity dB hex0x hex sci locale pixel
    accMS2 accFS2 accG degree radian grad arcmin arcsec areaM2 areaF2 areaMI2
    flops mflops gflops tflops pflops eflops zflops yflops
    ppm conppb conngm3 conngNm3 conμgm3 conμgNm3 conmgm3 conmgNm3 congm3 congNm3 conmgdL conmmolL
    currencyUSD currencyGBP currencyEUR currencyJPY currencyRUB currencyUAH currencyBRL
    currencyDKK currencyISK currencyNOK currencySEK currencyCZK currencyCHF currencyPLN
    currencyBTC currencymBTC currencyμBTC currencyZAR currencyINR currencyKRW currencyIDR
    currencyPHP currencyVND
    bytes decbytes bits decbits kbytes deckbytes mbytes decmbytes gbytes decgbytes tbytes
    dectbytes pbytes decpbytes
    pps binBps Bps binbps bps KiBs Kibits KBs Kbits MiBs Mibits MBs Mbits GiBs Gibits GBs Gbits
    TiBs Tibits TBs Tbits PiBs Pibits PBs Pbits
    dateTimeAsIso dateTimeAsIsoNoDateIfToday dateTimeAsUS dateTimeAsUSNoDateIfToday
    dateTimeAsLocal dateTimeAsLocalNoDateIfToday dateTimeAsSystem dateTimeFromNow
    watt kwatt megwatt gwatt mwatt Wm2 voltamp kvoltamp voltampreact kvoltampreact watth
    watthperkg kwatth kwattm amph kamph mamph joule ev amp kamp mamp volt kvolt mvolt dBm ohm
    kohm Mohm farad µfarad nfarad pfarad ffarad henry mhenry µhenry lumens
    flowgpm flowcms flowcfs flowcfm litreh flowlpm flowmlpm lux
    forceNm forcekNm forceN forcekN Hs KHs MHs GHs THs PHs EHs
    massmg massg masslb masskg masst lengthmm lengthin lengthft lengthm lengthkm lengthmi
    pressurembar pressurebar pressurekbar pressurepa pressurehpa pressurekpa pressurehg
    pressurepsi
    radbq radci radgy radrad radsv radmsv radusv radrem radexpckg radr radsvh radmsvh radusvh
    rotrpm rothz rotrads rotdegs celsius fahrenheit kelvin
    hertz ns µs ms s m h d dtdurationms dtdurations dthms dtdhms timeticks clockms clocks
    cps ops reqps rps wps iops cpm opm rpm wpm
    velocityms velocitykmh velocitymph velocityknot mlitre litre m3 Nm3 dm3 gallons
    bool bool_yes_no bool_on_off
    """.split()  # noqa: SIM905 - Grafana's categories one per line, not 240 quoted words
)

# What the lint substitutes for Grafana's global variables before parsing an expression.
LINT_BUILTINS = {
    "__rate_interval": "5m",
    "__rate_interval_ms": "300000",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1d",
    "__range_s": "86400",
    "__range_ms": "86400000",
}
RATE_INTERVAL = {"$__rate_interval", "${__rate_interval}"}
RANGE = {"$__range", "${__range}"}
_INTERVAL = re.compile(r"\$\{?__interval\b")
_LEGEND_GPU = re.compile(r"\{\{\s*(gpu|uuid|mig_uuid|gpu_instance)\s*\}\}")
_LEGEND_NODE = re.compile(r"\{\{\s*node\s*\}\}")
_DASHBOARD_LINK = re.compile(r"/d/([A-Za-z0-9_-]+)")


def lint_values(model: Mapping[str, Any]) -> Callable[[str], str | None]:
    """Values that make every variable of `model` a valid token where Grafana would put its
    value: a regex for query variables (they sit in `=~"..."` matchers), the current value of
    custom and constant ones, durations and numbers for the global ones."""
    values: dict[str, str] = dict(LINT_BUILTINS)
    for variable in variables(model):
        name = variable.get("name", "")
        kind = variable.get("type")
        if kind == "query":
            values[name] = (variable.get("allValue") if variable.get("includeAll") else None) or (
                ".+"
            )
        elif kind == "datasource":
            values[name] = "prometheus"
        elif kind == "interval":
            values[name] = "5m"
        else:
            current = (variable.get("current") or {}).get("value")
            if isinstance(current, list):
                current = current[0] if current else None
            options = variable.get("options") or [{}]
            values[name] = str(current or variable_query(variable) or options[0].get("value", ""))
    return values.get


def lint_expr(model: Mapping[str, Any], expr: str) -> str:
    return substitute(expr, lint_values(model))


# -- dashboard rules ------------------------------------------------------------------------


def rule_template_datasource(model: JSON) -> Problems:
    """template-datasource-rule: exactly one datasource variable, named `datasource`, labelled
    "Data source", of type prometheus, so one import works against any Prometheus (and
    Grafana's own mixin tooling recognises it)."""
    found = [v for v in variables(model) if v.get("type") == "datasource"]
    if len(found) != 1:
        return [f"expected one datasource variable, found {len(found)}"]
    (variable,) = found
    problems = []
    if variable.get("name") != DATASOURCE_VARIABLE:
        problems.append(f"datasource variable named {variable.get('name')!r}, not 'datasource'")
    if variable.get("label") != "Data source":
        problems.append(f"datasource variable labelled {variable.get('label')!r}")
    if variable.get("query") != "prometheus":
        problems.append(f"datasource variable of type {variable.get('query')!r}")
    return problems


def rule_uneditable(model: JSON) -> Problems:
    """uneditable-dashboard: the JSON is generated, so an edit in Grafana's UI would be lost at
    the next provisioning; `editable: false` says so up front."""
    return [] if model.get("editable") is False else [f"editable is {model.get('editable')!r}"]


def rule_no_inputs(model: JSON) -> Problems:
    """No `__inputs`/`__requires`: those belong to grafana.com exports whose datasource is fixed
    at import; ours picks its datasource through the variable."""
    return [f"has {key}" for key in ("__inputs", "__requires") if key in model]


def rule_no_hardcoded_datasource(model: JSON) -> Problems:
    """panel-datasource-rule and more: every datasource reference anywhere (panels, targets,
    variables) is the templated one; a hard-coded uid breaks the dashboard on every other
    Grafana. Only Grafana's built-in annotation source is allowed as well."""
    problems = []
    for path, value in iter_datasources(model):
        if value == TEMPLATED_DATASOURCE or value in ("$datasource", "${datasource}"):
            continue
        if isinstance(value, Mapping) and value.get("uid") == "-- Grafana --":
            continue
        problems.append(f"{path} = {value!r}")
    return problems


def rule_on_time_change_reload(model: JSON) -> Problems:
    """template-on-time-change-reload-rule: query variables refresh on a time-range change
    (refresh 2), or a GPU or pod that appeared since the dashboard loaded is missing."""
    return [
        f"variable {v.get('name')!r} refresh={v.get('refresh')!r}, expected 2"
        for v in variables(model)
        if v.get("type") == "query" and v.get("refresh") != 2
    ]


def rule_template_label_promql(model: JSON) -> Problems:
    """template-label-promql-rule: query variables are `label_values(<selector>, <label>)`
    with the templated datasource, `definition` mirrors the query (Grafana shows it), and the
    selector parses (checked with promtool in test_variable_queries_parse)."""
    problems = []
    for variable in variables(model):
        if variable.get("type") != "query":
            continue
        name = variable.get("name")
        query = variable_query(variable)
        if label_values_query(query) is None:
            problems.append(f"variable {name!r}: query {query!r} is not label_values(..., label)")
        if variable.get("definition") != query:
            problems.append(f"variable {name!r}: definition differs from query")
        if variable.get("datasource") != TEMPLATED_DATASOURCE:
            problems.append(f"variable {name!r}: datasource {variable.get('datasource')!r}")
    return problems


def rule_variable_conventions(model: JSON) -> Problems:
    """Our variables (docs/dashboards.md): a hidden `cluster` whose All is `.*` (it matches
    series without a cluster label, so one-cluster installs need nothing); a `node` variable;
    and every multi-value variable with All has an allValue regex, so the query gets `.+`
    instead of an alternation of hundreds of values."""
    by_name = {v.get("name"): v for v in variables(model)}
    problems = []
    cluster = by_name.get("cluster")
    if cluster is None:
        problems.append("no cluster variable")
    else:
        if cluster.get("hide") != 2:
            problems.append(f"cluster variable hide={cluster.get('hide')!r}, expected 2")
        if not cluster.get("includeAll") or cluster.get("allValue") != ".*":
            problems.append("cluster variable must include All with allValue '.*'")
    if "node" not in by_name:
        problems.append("no node variable")
    for variable in by_name.values():
        if variable.get("type") != "query":
            continue
        if variable.get("includeAll") and not variable.get("allValue"):
            problems.append(f"variable {variable.get('name')!r} includes All without allValue")
        if variable.get("multi") and not variable.get("includeAll"):
            problems.append(f"variable {variable.get('name')!r} is multi-value without All")
    return problems


def rule_variables_defined(model: JSON) -> Problems:
    """Every `$variable` an expression, variable query or link uses is defined on the
    dashboard or is one of Grafana's globals: an undefined one reaches Prometheus verbatim
    and the panel silently shows nothing."""
    defined = {v.get("name") for v in variables(model)} | BUILTIN_VARIABLES
    problems = []
    for path, text in iter_strings(model):
        if path.endswith((".expr", ".query", ".definition", ".url", ".legendFormat")):
            for name in sorted(variable_refs(text) - defined):
                problems.append(f"{path}: ${name} is not defined")
    return problems


def rule_tagged(model: JSON) -> Problems:
    """Every dashboard carries the `nvidia-gpu` tag: the dashboards' link dropdown lists
    dashboards by that tag."""
    return [] if TAG in (model.get("tags") or []) else [f"tags {model.get('tags')!r}"]


DASHBOARD_RULES: dict[str, Callable[[JSON], Problems]] = {
    "template-datasource-rule": rule_template_datasource,
    "uneditable-dashboard": rule_uneditable,
    "no-inputs": rule_no_inputs,
    "no-hardcoded-datasource": rule_no_hardcoded_datasource,
    "template-on-time-change-reload-rule": rule_on_time_change_reload,
    "template-label-promql-rule": rule_template_label_promql,
    "variable-conventions": rule_variable_conventions,
    "variables-defined": rule_variables_defined,
    "tagged": rule_tagged,
}


def rule_uid_is_file_stem(model: JSON, stem: str) -> Problems:
    """The uid equals the file stem and is one of the stable uids: links, bookmarks and
    provisioning address dashboards by uid."""
    problems = []
    if model.get("uid") != stem:
        problems.append(f"uid {model.get('uid')!r} != file stem {stem!r}")
    if stem not in EXPECTED_UIDS:
        problems.append(f"{stem!r} is not one of the stable uids {EXPECTED_UIDS}")
    return problems


def rule_links_resolve(model: JSON, uids: set[str]) -> Problems:
    """Every `/d/<uid>` link (dashboard links, panel and data links) names a dashboard we
    ship, and tag-based dashboard links use our tag: a drill-down to nowhere is a dead end
    at 3 a.m."""
    problems = []
    for path, text in iter_strings(model):
        for uid in _DASHBOARD_LINK.findall(text):
            if uid not in uids:
                problems.append(f"{path}: link to unknown dashboard {uid!r}")
    for link in model.get("links") or []:
        if link.get("type") == "dashboards" and TAG not in (link.get("tags") or []):
            problems.append(f"dashboard link {link.get('title')!r} does not select tag {TAG!r}")
    return problems


# -- panel rules ----------------------------------------------------------------------------


def rule_panel_title_description(panel: JSON) -> Problems:
    """panel-title-description-rule, on every panel (the linter checks only some types): the
    description is the panel's (i) tooltip, where on-call reads what a number means."""
    if panel.get("type") == "row":
        return [] if str(panel.get("title", "")).strip() else ["row without title"]
    problems = []
    if not str(panel.get("title", "")).strip():
        problems.append("no title")
    if not str(panel.get("description", "")).strip():
        problems.append("no description")
    return problems


def rule_panel_units(panel: JSON) -> Problems:
    """panel-units-rule: every query panel's unit (and every unit override) is a Grafana unit
    id; an unknown id renders the raw number, and `percentunit` vs `percent` is a 100x
    error."""
    if not is_query_panel(panel):
        return []
    field_config = panel.get("fieldConfig") or {}
    unit = (field_config.get("defaults") or {}).get("unit")
    problems = []
    if unit not in VALID_UNITS:
        problems.append(f"unit {unit!r} is not a Grafana unit id")
    for override in field_config.get("overrides") or []:
        for prop in override.get("properties") or []:
            if prop.get("id") == "unit" and prop.get("value") not in VALID_UNITS:
                problems.append(f"override unit {prop.get('value')!r} is not a Grafana unit id")
    return problems


def rule_panel_datasource(panel: JSON) -> Problems:
    """panel-datasource-rule: a query panel uses the templated datasource."""
    if not is_query_panel(panel):
        return []
    ds = panel.get("datasource")
    return [] if ds == TEMPLATED_DATASOURCE else [f"datasource {ds!r}"]


def rule_panel_targets(panel: JSON) -> Problems:
    """panel-no-targets-rule, and refIds unique within the panel (Grafana merges results and
    names table columns by refId)."""
    if not is_query_panel(panel):
        return []
    refs = [t.get("refId") for t in targets(panel)]
    problems = [] if refs else ["no targets"]
    duplicates = sorted({ref for ref in refs if refs.count(ref) > 1}, key=str)
    if duplicates:
        problems.append(f"duplicate refIds {duplicates}")
    return problems


def rule_empty_documented(panel: JSON) -> Problems:
    """A panel allowed to show no data says why: the phrase `Empty on a healthy node` must be
    followed by a reason (a few words), which docs/dashboards.md repeats."""
    reason = empty_reason(panel)
    if reason is None:
        return []
    if len(reason.split()) < 3:
        return [f"{EMPTY_OK!r} without a reason: {panel.get('description')!r}"]
    return []


PANEL_RULES: dict[str, Callable[[JSON], Problems]] = {
    "panel-title-description-rule": rule_panel_title_description,
    "panel-units-rule": rule_panel_units,
    "panel-datasource-rule": rule_panel_datasource,
    "panel-no-targets-rule": rule_panel_targets,
    "empty-panel-documented": rule_empty_documented,
}


# -- target rules ---------------------------------------------------------------------------


def rule_target_fields(model: JSON, target: JSON) -> Problems:
    """Every target has the templated datasource, an expr, a refId, an explicit instant or
    range choice and a legendFormat: what Grafana would otherwise fill in differs between
    versions."""
    problems = []
    if target.get("datasource") != TEMPLATED_DATASOURCE:
        problems.append(f"datasource {target.get('datasource')!r}")
    if not str(target.get("expr", "")).strip():
        problems.append("no expr")
    if not target.get("refId"):
        problems.append("no refId")
    if not isinstance(target.get("instant"), bool):
        problems.append(f"instant is {target.get('instant')!r}, not true/false")
    elif "range" in target and target["range"] == target["instant"]:
        problems.append("instant and range are both set or both unset")
    if not isinstance(target.get("legendFormat"), str):
        problems.append("no legendFormat")
    return problems


def rule_target_rate_interval(model: JSON, target: JSON) -> Problems:
    """target-rate-interval-rule: rate() and irate() read `[$__rate_interval]`, which Grafana
    keeps at least four scrape intervals (a hard-coded or `$__interval` window goes empty
    when zoomed in, or smooths away spikes when zoomed out). increase() may also use
    `[$__range]` (totals over the dashboard's range, the cost dashboard); no range anywhere
    uses `$__interval`."""
    expr = str(target.get("expr", ""))
    problems = []
    for use in ranges(expr):
        if use.call in ("rate", "irate") and use.text not in RATE_INTERVAL:
            problems.append(f"{use.call}(...[{use.text}]) should use [$__rate_interval]")
        elif use.call == "increase" and use.text not in RATE_INTERVAL | RANGE:
            problems.append(f"increase(...[{use.text}]) should use $__rate_interval or $__range")
        if _INTERVAL.search(use.text):
            problems.append(f"range [{use.text}] uses $__interval")
    return problems


def rule_target_counter_agg(model: JSON, target: JSON) -> Problems:
    """target-counter-agg-rule: a counter (`_total`) is only read through rate(), irate() or
    increase() over a range selector: its raw value resets with the exporter and means
    nothing across GPUs."""
    problems = []
    for selector in selectors(str(target.get("expr", ""))):
        if not selector.name.endswith("_total"):
            continue
        if selector.call not in COUNTER_FUNCTIONS or not selector.range or ":" in selector.range:
            problems.append(
                f"counter {selector.name} is not inside rate/irate/increase(...[range])"
            )
    return problems


def rule_target_metrics_known(model: JSON, target: JSON) -> Problems:
    """Every metric a target reads exists in the exporter's catalog or is one of our
    recording rules: a renamed metric fails here, not as an empty panel in production."""
    expr = lint_expr(model, str(target.get("expr", "")))
    unknown = unknown_names(expr, recording_rule_names())
    return [f"unknown metric {name}" for name in sorted(unknown)]


def rule_target_legend_names_node(model: JSON, target: JSON) -> Problems:
    """A legend that names a GPU (`{{gpu}}`, `{{uuid}}`, MIG ids) also names its node: GPU 3
    exists on every node, and a legend without the host is the most asked-for fix of the
    public GPU dashboards. (The panel test checks the same against real results.)"""
    legend = str(target.get("legendFormat", ""))
    if target.get("format") == "table":
        return []
    if _LEGEND_GPU.search(legend) and not _LEGEND_NODE.search(legend):
        return [f"legend {legend!r} names a GPU but not its {{{{node}}}}"]
    return []


TARGET_RULES: dict[str, Callable[[JSON, JSON], Problems]] = {
    "target-fields": rule_target_fields,
    "target-rate-interval-rule": rule_target_rate_interval,
    "target-counter-agg-rule": rule_target_counter_agg,
    "target-metrics-known": rule_target_metrics_known,
    "target-legend-names-node": rule_target_legend_names_node,
}


# -- promtool: every expression parses ------------------------------------------------------


def promtool_problems(exprs: Mapping[str, str]) -> dict[str, str]:
    """Key -> promtool's parse error for each expression that does not parse.

    Each expression becomes a recording rule in a group of its own (group names carry the
    key), so one `promtool check rules` run reports every bad expression by name."""
    promtool = require_tool("promtool")
    keys = list(exprs)
    document = {
        "groups": [
            {"name": f"target-{index}", "rules": [{"record": f"lint:target_{index}", "expr": e}]}
            for index, e in enumerate(exprs.values())
        ]
    }
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "dashboard-exprs.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False, width=10_000))
        result = subprocess.run(
            [promtool, "check", "rules", "--lint=none", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    output = result.stdout + result.stderr
    problems: dict[str, str] = {}
    for line in output.splitlines():
        found = re.search(r'group "target-(\d+)".*?: (.*)$', line)
        if found:
            problems[keys[int(found.group(1))]] = found.group(2)
    if result.returncode != 0 and not problems:
        raise AssertionError(f"promtool failed without naming a rule:\n{output}")
    return problems


def all_expressions(dashboards: Sequence[Dashboard]) -> dict[str, str]:
    """Key -> variable-substituted expression of every target and variable selector."""
    exprs: dict[str, str] = {}
    for dashboard in dashboards:
        for panel in dashboard.panels():
            for target in targets(panel):
                exprs[target_key(dashboard, panel, target)] = lint_expr(
                    dashboard.model, str(target.get("expr", ""))
                )
        for variable in dashboard.variables():
            parsed = label_values_query(variable_query(variable))
            if variable.get("type") == "query" and parsed and parsed[0]:
                exprs[variable_key(dashboard, variable)] = lint_expr(dashboard.model, parsed[0])
    return exprs


def target_key(dashboard: Dashboard, panel: JSON, target: JSON) -> str:
    return f"{dashboard.path.stem}/{panel.get('id')}:{panel.get('title', '')}/{target.get('refId')}"


def variable_key(dashboard: Dashboard, variable: JSON) -> str:
    return f"{dashboard.path.stem}/variable:{variable.get('name')}"


# -- parametrization ------------------------------------------------------------------------

DASHBOARDS = load_dashboards()
PANELS = [(d, p) for d in DASHBOARDS for p in d.panels()]
TARGETS = [(d, p, t) for d, p in PANELS for t in targets(p)]


def panel_id(case: tuple[Dashboard, JSON]) -> str:
    dashboard, panel = case
    return f"{dashboard.path.stem}/{panel.get('id')}:{panel.get('title', '')}"


def target_id(case: tuple[Dashboard, JSON, JSON]) -> str:
    return target_key(*case)


@functools.cache
def parse_errors() -> dict[str, str]:
    return promtool_problems(all_expressions(DASHBOARDS))


def test_dashboards_are_generated() -> None:
    """The seven dashboards exist (run `python -m dashboards`), so every parametrized check
    below has something to check: an empty directory fails here."""
    stems = sorted(path.stem for path in dashboard_paths())
    assert stems, f"no dashboards in {DASHBOARD_DIR}: run `python -m dashboards`"
    assert stems == sorted(EXPECTED_UIDS)
    assert PANELS and TARGETS


@pytest.mark.parametrize("rule", sorted(DASHBOARD_RULES))
@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.path.stem)
def test_dashboard_rule(dashboard: Dashboard, rule: str) -> None:
    problems = DASHBOARD_RULES[rule](dashboard.model)
    assert not problems, f"{dashboard.path.name}: {rule}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.path.stem)
def test_uid_is_stable(dashboard: Dashboard) -> None:
    assert not rule_uid_is_file_stem(dashboard.model, dashboard.path.stem)


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.path.stem)
def test_links_resolve(dashboard: Dashboard) -> None:
    uids = {d.path.stem for d in DASHBOARDS}
    problems = rule_links_resolve(dashboard.model, uids)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("rule", sorted(PANEL_RULES))
@pytest.mark.parametrize("case", PANELS, ids=panel_id)
def test_panel_rule(case: tuple[Dashboard, JSON], rule: str) -> None:
    dashboard, panel = case
    problems = PANEL_RULES[rule](panel)
    assert not problems, f"{dashboard.path.name} {panel_label(panel)}: {rule}: {problems}"


@pytest.mark.parametrize("rule", sorted(TARGET_RULES))
@pytest.mark.parametrize("case", TARGETS, ids=target_id)
def test_target_rule(case: tuple[Dashboard, JSON, JSON], rule: str) -> None:
    dashboard, panel, target = case
    problems = TARGET_RULES[rule](dashboard.model, target)
    assert not problems, (
        f"{dashboard.path.name} {panel_label(panel)} target {target.get('refId')}: {rule}: "
        f"{problems}\n  expr: {target.get('expr')}"
    )


@pytest.mark.parametrize("case", TARGETS, ids=target_id)
def test_target_parses(case: tuple[Dashboard, JSON, JSON]) -> None:
    """target-promql-rule: promtool's parser (Prometheus' own) accepts the expression with
    the variables substituted."""
    dashboard, panel, target = case
    key = target_key(dashboard, panel, target)
    error = parse_errors().get(key)
    assert error is None, f"{key}: {error}\n  expr: {lint_expr(dashboard.model, target['expr'])}"


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.path.stem)
def test_variable_queries_parse(dashboard: Dashboard) -> None:
    errors = {
        variable_key(dashboard, v): parse_errors().get(variable_key(dashboard, v))
        for v in dashboard.variables()
    }
    bad = {key: error for key, error in errors.items() if error}
    assert not bad, bad


# -- self-tests: each rule flags a bad example and passes a good one -------------------------

DS = dict(TEMPLATED_DATASOURCE)


def good_target(expr: str, legend: str = "{{node}} GPU {{gpu}}", instant: bool = False) -> JSON:
    return {
        "datasource": dict(DS),
        "expr": expr,
        "refId": "A",
        "instant": instant,
        "range": not instant,
        "legendFormat": legend,
    }


GOOD_PANEL: JSON = {
    "id": 2,
    "type": "timeseries",
    "title": "GPU utilization",
    "description": "Busy fraction of each GPU.",
    "datasource": dict(DS),
    "fieldConfig": {"defaults": {"unit": "percentunit"}, "overrides": []},
    "targets": [
        good_target('max by (node, gpu, uuid) (nvidia_gpu_utilization_ratio{node=~"$node"})')
    ],
}


def query_variable(name: str, query: str, **options: Any) -> JSON:
    return {
        "type": "query",
        "name": name,
        "label": name.title(),
        "datasource": dict(DS),
        "query": query,
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".+",
        **options,
    }


GOOD_DASHBOARD: JSON = {
    "uid": "nvidia-gpu-node",
    "title": "NVIDIA GPU / Node",
    "editable": False,
    "tags": [TAG],
    "links": [{"type": "dashboards", "tags": [TAG], "title": "NVIDIA GPU dashboards"}],
    "templating": {
        "list": [
            {
                "type": "datasource",
                "name": "datasource",
                "label": "Data source",
                "query": "prometheus",
            },
            query_variable(
                "cluster", "label_values(nvidia_gpu_info, cluster)", hide=2, allValue=".*"
            ),
            query_variable("node", 'label_values(nvidia_gpu_info{cluster=~"$cluster"}, node)'),
        ]
    },
    "panels": [
        {"id": 1, "type": "row", "title": "Utilization", "panels": []},
        GOOD_PANEL,
        {"id": 3, "type": "text", "title": "About", "description": "What this shows."},
        {
            "id": 4,
            "type": "stat",
            "title": "Xid errors",
            "description": f"{EMPTY_OK}: a healthy GPU logs no Xid errors.",
            "datasource": dict(DS),
            "fieldConfig": {"defaults": {"unit": "short"}},
            "links": [{"url": "/d/nvidia-gpu-detail?var-node=${__field.labels.node}"}],
            "targets": [
                good_target(
                    "sum by (node) (increase(nvidia_gpu_xid_errors_total"
                    '{node=~"$node"}[$__range]))',
                    legend="{{node}}",
                    instant=True,
                )
            ],
        },
    ],
}


def mutated(change: Callable[[JSON], None], base: JSON = GOOD_DASHBOARD) -> JSON:
    model = copy.deepcopy(base)
    change(model)
    return model


def _var(model: JSON, name: str) -> JSON:
    return next(v for v in model["templating"]["list"] if v["name"] == name)


def _set(obj: JSON, **values: Any) -> None:
    obj.update(values)


BAD_DASHBOARDS: list[tuple[str, Callable[[JSON], None], str]] = [
    ("template-datasource-rule", lambda m: m["templating"]["list"].pop(0), "one datasource"),
    ("template-datasource-rule", lambda m: _set(_var(m, "datasource"), name="ds"), "named"),
    ("template-datasource-rule", lambda m: _set(_var(m, "datasource"), label="DS"), "labelled"),
    ("uneditable-dashboard", lambda m: _set(m, editable=True), "editable"),
    ("no-inputs", lambda m: _set(m, __inputs=[]), "__inputs"),
    (
        "no-hardcoded-datasource",
        lambda m: _set(m["panels"][1]["targets"][0], datasource={"uid": "P1809F7CD0C75ACF3"}),
        "P1809F7CD0C75ACF3",
    ),
    ("template-on-time-change-reload-rule", lambda m: _set(_var(m, "node"), refresh=1), "refresh"),
    (
        "template-label-promql-rule",
        lambda m: _set(_var(m, "node"), query="query_result(up)", definition="query_result(up)"),
        "not label_values",
    ),
    ("template-label-promql-rule", lambda m: _set(_var(m, "node"), definition="x"), "definition"),
    ("variable-conventions", lambda m: _set(_var(m, "cluster"), hide=0), "hide"),
    ("variable-conventions", lambda m: _set(_var(m, "cluster"), allValue=".+"), "'.*'"),
    ("variable-conventions", lambda m: _set(_var(m, "node"), allValue=None), "without allValue"),
    ("variable-conventions", lambda m: m["templating"]["list"].pop(2), "no node"),
    (
        "variables-defined",
        lambda m: _set(m["panels"][1]["targets"][0], expr='up{node=~"$host"}'),
        "$host",
    ),
    ("tagged", lambda m: _set(m, tags=["gpu"]), "tags"),
]


@pytest.mark.parametrize(
    ("rule", "change", "expected"),
    BAD_DASHBOARDS,
    ids=[f"{rule}-{index}" for index, (rule, _, _) in enumerate(BAD_DASHBOARDS)],
)
def test_dashboard_rule_flags_bad_example(
    rule: str, change: Callable[[JSON], None], expected: str
) -> None:
    assert not DASHBOARD_RULES[rule](GOOD_DASHBOARD)
    problems = DASHBOARD_RULES[rule](mutated(change))
    assert any(expected in problem for problem in problems), problems


def test_uid_and_link_rules_flag_bad_examples() -> None:
    assert not rule_uid_is_file_stem(GOOD_DASHBOARD, "nvidia-gpu-node")
    assert rule_uid_is_file_stem(GOOD_DASHBOARD, "nvidia-gpu-nodes")
    assert rule_uid_is_file_stem(mutated(lambda m: _set(m, uid="abc123")), "nvidia-gpu-node")
    uids = set(EXPECTED_UIDS)
    assert not rule_links_resolve(GOOD_DASHBOARD, uids)
    dead = mutated(lambda m: _set(m["panels"][3]["links"][0], url="/d/nvidia-gpu-detial?x=1"))
    assert rule_links_resolve(dead, uids) == [
        ".panels[3].links[0].url: link to unknown dashboard 'nvidia-gpu-detial'"
    ]
    untagged = mutated(lambda m: _set(m["links"][0], tags=[]))
    assert rule_links_resolve(untagged, uids)


def bad_panel(**changes: Any) -> JSON:
    panel = copy.deepcopy(GOOD_PANEL)
    panel.update(changes)
    return panel


BAD_PANELS: list[tuple[str, JSON, str]] = [
    ("panel-title-description-rule", bad_panel(description=""), "no description"),
    ("panel-title-description-rule", bad_panel(title=" "), "no title"),
    ("panel-title-description-rule", {"type": "row", "title": ""}, "row without title"),
    ("panel-units-rule", bad_panel(fieldConfig={"defaults": {}}), "None"),
    ("panel-units-rule", bad_panel(fieldConfig={"defaults": {"unit": "percentage"}}), "percentage"),
    (
        "panel-units-rule",
        bad_panel(
            fieldConfig={
                "defaults": {"unit": "bytes"},
                "overrides": [{"properties": [{"id": "unit", "value": "Watts"}]}],
            }
        ),
        "Watts",
    ),
    ("panel-datasource-rule", bad_panel(datasource={"type": "prometheus", "uid": "abc"}), "abc"),
    ("panel-no-targets-rule", bad_panel(targets=[]), "no targets"),
    (
        "panel-no-targets-rule",
        bad_panel(targets=[good_target("up"), good_target("up")]),
        "duplicate refIds",
    ),
    ("empty-panel-documented", bad_panel(description=f"Busy fraction. {EMPTY_OK}."), "reason"),
]


@pytest.mark.parametrize(
    ("rule", "panel", "expected"),
    BAD_PANELS,
    ids=[f"{rule}-{index}" for index, (rule, _, _) in enumerate(BAD_PANELS)],
)
def test_panel_rule_flags_bad_example(rule: str, panel: JSON, expected: str) -> None:
    for good in panels(GOOD_DASHBOARD):
        assert not PANEL_RULES[rule](good), good
    problems = PANEL_RULES[rule](panel)
    assert any(expected in problem for problem in problems), problems


def bad_target(expr: str = "up", **changes: Any) -> JSON:
    target = good_target(expr)
    target.update(changes)
    return target


BAD_TARGETS: list[tuple[str, JSON, str]] = [
    ("target-fields", bad_target(datasource={"uid": "grafanacloud-prom"}), "datasource"),
    ("target-fields", bad_target(expr=""), "no expr"),
    ("target-fields", bad_target(refId=""), "no refId"),
    ("target-fields", {**good_target("up"), "instant": None}, "instant"),
    ("target-fields", bad_target(legendFormat=None), "legendFormat"),
    (
        "target-rate-interval-rule",
        bad_target("rate(nvidia_gpu_energy_joules_total[5m])"),
        "$__rate_interval",
    ),
    (
        "target-rate-interval-rule",
        bad_target("irate(nvidia_gpu_pcie_replays_total[$__interval])"),
        "$__interval",
    ),
    (
        "target-rate-interval-rule",
        bad_target("increase(nvidia_gpu_xid_errors_total[1h])"),
        "increase",
    ),
    (
        "target-rate-interval-rule",
        bad_target("max_over_time(nvidia_gpu_up[$__interval])"),
        "uses $__interval",
    ),
    ("target-counter-agg-rule", bad_target("sum(nvidia_gpu_xid_errors_total)"), "counter"),
    (
        "target-counter-agg-rule",
        bad_target("delta(nvidia_gpu_energy_joules_total[$__rate_interval])"),
        "counter",
    ),
    (
        "target-counter-agg-rule",
        bad_target("increase(nvidia_gpu_xid_errors_total[$__range:1m])"),
        "counter",
    ),
    ("target-metrics-known", bad_target("nvidia_gpu_utilisation_ratio"), "utilisation"),
    ("target-metrics-known", bad_target("gpu:nvidia_gpu_price:usd"), "gpu:nvidia_gpu_price:usd"),
    ("target-legend-names-node", bad_target(legendFormat="GPU {{ gpu }}"), "node"),
    ("target-legend-names-node", bad_target(legendFormat="{{mig_uuid}}"), "node"),
]


@pytest.mark.parametrize(
    ("rule", "target", "expected"),
    BAD_TARGETS,
    ids=[f"{rule}-{index}" for index, (rule, _, _) in enumerate(BAD_TARGETS)],
)
def test_target_rule_flags_bad_example(rule: str, target: JSON, expected: str) -> None:
    for panel in panels(GOOD_DASHBOARD):
        for good in targets(panel):
            assert not TARGET_RULES[rule](GOOD_DASHBOARD, good), good
    problems = TARGET_RULES[rule](GOOD_DASHBOARD, target)
    assert any(expected in problem for problem in problems), problems


def test_counter_rule_accepts_counters_inside_rate_and_subqueries_of_rates() -> None:
    expr = (
        "max_over_time(sum by (node) (rate(nvidia_gpu_energy_joules_total"
        '{node=~"$node"}[$__rate_interval]))[$__range:1m])'
        " / on (node) group_left sum(increase(nvidia_gpu_xid_errors_total[$__range]))"
    )
    assert not rule_target_counter_agg(GOOD_DASHBOARD, good_target(expr))
    assert not rule_target_rate_interval(GOOD_DASHBOARD, good_target(expr))


def test_promtool_check_flags_an_unparsable_expression() -> None:
    problems = promtool_problems(
        {
            "good": lint_expr(GOOD_DASHBOARD, GOOD_PANEL["targets"][0]["expr"]),
            "bad": "sum by (node) (rate(nvidia_gpu_energy_joules_total[5m])",
            "also bad": 'nvidia_gpu_up{node=~"$node"} +',  # unsubstituted vars are fine in
        }
    )
    assert set(problems) == {"bad", "also bad"}, problems
    assert "parse error" in problems["bad"]


def test_lint_substitutes_variables_like_grafana_would() -> None:
    expr = (
        'rate(x_total{cluster=~"$cluster", node=~"${node}"}[$__rate_interval])'
        " * $__range_s + [[node]]"
    )
    assert lint_expr(GOOD_DASHBOARD, expr) == (
        'rate(x_total{cluster=~".*", node=~".+"}[5m]) * 86400 + .+'
    )
