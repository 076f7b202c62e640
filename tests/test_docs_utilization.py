"""docs/utilization.md: every PromQL example parses, reads real families and says what it claims.

What is checked here, and why:
- every ```promql block reads only families of the exporter's catalog (a renamed metric breaks
  this test, not a reader's dashboard);
- promtool accepts all of them as recording rules (doc:example_N);
- promtool evaluates the examples marked `<!-- check: NAME -->` against modelled series and
  each returns exactly the values the page states: the 30 % duty-cycle GPU reads 0.3 through
  the "true average" (and 0.25 through the old gauge), the time-sliced GPU's pods 0.5/0.3/0.2,
  the starved GPU and nothing else, and so on. The input series carry `job` and `instance`
  like real scrapes do, so a join that forgets `on (...)` returns nothing and fails;
- the evaluation fails for wrong queries (mutations of the doc's own examples), so it can fail;
- the cardinality table and the settings the page quotes match the code, and the series per GPU
  it quotes are what `benchmarks/collection.py` (`make bench-collection`) measures.

Exact values: promtool (2.42) compares floats exactly, and rate() multiplies by 1/range, so
0.3 comes out as 0.30000000000000004. Each evaluated expression is wrapped in
round(..., 0.001), which leaves every stated value intact and any wrong query still wrong.
Evaluation times are off the 15 s scrape grid (605 s, not 600 s) so the range selectors hold
the same samples whether the range's left end is closed (Prometheus 2) or open (3).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from exporter import cli, config, metrics
from exporter.metrics_activity import PIPES, UTILIZATION_ENGINES
from exporter.sources.nvml import gpm
from tests.promql import unknown_names
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "utilization.md"

_BLOCK = re.compile(r"(?:<!--\s*check:\s*(\w+)\s*-->\s*\n)?```promql\n(.*?)```", re.DOTALL)
_METRIC = re.compile(r"\bnvidia_gpu_\w+")


@dataclass(frozen=True)
class Example:
    index: int
    check: str | None
    expr: str


def examples(text: str | None = None) -> list[Example]:
    """Every ```promql block of the page, with the check marker just above it (if any)."""
    found = _BLOCK.findall(DOC.read_text() if text is None else text)
    return [
        Example(index, check or None, expr.strip())
        for index, (check, expr) in enumerate(found, start=1)
    ]


def by_check() -> dict[str, str]:
    return {example.check: example.expr for example in examples() if example.check}


# -- the model the key examples are evaluated on ---------------------------------------------

SCRAPE = 15  # seconds between samples of every input series
TARGET = {"job": "gpu-node-exporter", "instance": "node-a:9400"}


def labels(**extra: str) -> dict[str, str]:
    return {**TARGET, **extra}


def selector(name: str, label_set: dict[str, str]) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(label_set.items()))
    return f"{name}{{{inner}}}"


def counter(per_second: float, steps: int) -> str:
    """A counter growing `per_second` per second, one sample per scrape, from 0."""
    step = f"{per_second * SCRAPE:.9f}".rstrip("0").rstrip(".")  # promtool reads no exponent
    return f"0+{step}x{steps}"


def gpu(index: int) -> dict[str, str]:
    return {"gpu": str(index), "uuid": f"GPU-{index}"}


@dataclass
class Model:
    """Input series and expected outputs of one promtool test group."""

    steps: int
    eval_time: int  # seconds, off the scrape grid
    series: list[tuple[str, str]]
    expected: dict[str, list[tuple[dict[str, str], float]]]

    def add(self, name: str, label_set: dict[str, str], values: str) -> None:
        self.series.append((selector(name, label_set), values))


BUSY = metrics.UTILIZATION_BUSY.name
SAMPLED = metrics.UTILIZATION_SAMPLED.name
GAUGE = metrics.UTILIZATION.name
GPM = metrics.GPM
MIG_GPM = metrics.MIG_GPM
POD_BUSY = metrics.POD_UTILIZATION_BUSY.name


def five_minute_model() -> Model:
    """10 minutes at a 15 s scrape; evaluated at 605 s (5 m windows hold 20 samples)."""
    steps = 40
    m = Model(steps, 605, [], {})

    def utilization(index: int, busy: float, sampled: float = 1.0) -> None:
        m.add(BUSY, labels(**gpu(index), engine="gpu"), counter(busy, steps))
        m.add(SAMPLED, labels(**gpu(index), engine="gpu"), counter(sampled, steps))

    def profiling(index: int, sm: float, tensor: float, dram: float, **pipes: float) -> None:
        base = labels(**gpu(index))
        m.add(GPM.sm_active_seconds.name, base, counter(sm, steps))
        m.add(GPM.tensor_active_seconds.name, base, counter(tensor, steps))
        m.add(GPM.dram_active_seconds.name, base, counter(dram, steps))
        for pipe in PIPES:
            m.add(
                GPM.pipe_active_seconds.name,
                {**base, "pipe": pipe},
                counter(pipes.get(pipe, 0.0), steps),
            )

    # GPU 0: training, tensor heavy.       GPU 1: an older GPU whose buffer wrapped (true 50 %).
    # GPU 2: memory-bound.                 GPU 3: busy but starved.
    # GPU 4: 2 s bursts, 30 % duty cycle.  GPU 5: time-sliced by three pods; GPU 8 by one.
    utilization(0, 0.9)
    profiling(0, sm=0.92, tensor=0.8, dram=0.85, tensor_hmma=0.76, fp16=0.22, fp32=0.18)
    # A whole GPU's NVLink traffic: the field-value byte counters (GPM has none for it).
    m.add(metrics.NVLINK_TX_BYTES.name, labels(**gpu(0)), counter(1e9, steps))
    m.add(metrics.NVLINK_RX_BYTES.name, labels(**gpu(0)), counter(2e8, steps))
    m.add(metrics.NVLINK_TX_BYTES.name, labels(**gpu(2)), counter(3e8, steps))
    utilization(1, 0.25, sampled=0.5)
    utilization(2, 1.0)
    profiling(2, sm=0.9, tensor=0.0, dram=0.8, fp32=0.1, integer=0.05)
    utilization(3, 0.95)
    profiling(3, sm=0.05, tensor=0.01, dram=0.1, fp32=0.02, integer=0.03, tensor_hmma=0.01)
    utilization(4, 0.3)
    profiling(4, sm=0.2, tensor=0.18, dram=0.15, tensor_imma=0.15, fp16=0.05)
    # The gauge is one sample per scrape: the burst is caught on 1 scrape of every 4.
    m.add(GAUGE, labels(**gpu(4)), " ".join("1" if i % 4 == 1 else "0" for i in range(steps + 1)))
    utilization(5, 0.6)
    # (GPU, namespace, pod, pod_uid) -> busy rate. GPU 8 holds two pods the kubelet could not
    # name (namespace and pod empty): only pod_uid tells them apart.
    pods = {
        (5, "ml", "train-a", "uid-a"): 0.3,
        (5, "ml", "train-b", "uid-b"): 0.18,
        (5, "research", "nb", "uid-c"): 0.12,
        (8, "ml", "solo", "uid-d"): 0.2,
        (8, "", "", "uid-e"): 0.1,
        (8, "", "", "uid-f"): 0.1,
    }
    shares = (0.5, 0.3, 0.2, 0.5, 0.25, 0.25)
    for (index, namespace, pod, uid), rate in pods.items():
        pod_labels = labels(**gpu(index), mig_uuid="", namespace=namespace, pod=pod, pod_uid=uid)
        for engine, engine_rate in (("gpu", rate), ("memory", rate / 2)):
            busy = {**pod_labels, "container": "main", "engine": engine}
            m.add(POD_BUSY, busy, counter(engine_rate, steps))
    # GPU 6: MIG, GPU instances 7 and 8 (1g.10gb); a pod holds instance 7.
    assert MIG_GPM.pcie_bytes is not None and MIG_GPM.nvlink_bytes is not None
    for instance, sm, graphics, pcie_tx, pcie_rx in (
        ("7", 0.1, 0.15, 2e8, 3e8),
        ("8", 0.2, 0.25, 1e8, 0.0),
    ):
        gi = labels(**gpu(6), gpu_instance=instance)
        m.add(MIG_GPM.sm_active_seconds.name, gi, counter(sm, steps))
        m.add(MIG_GPM.graphics_active_seconds.name, gi, counter(graphics, steps))
        for direction, rate in (("transmit", pcie_tx), ("receive", pcie_rx)):
            m.add(MIG_GPM.pcie_bytes.name, {**gi, "direction": direction}, counter(rate, steps))
            # NVLink traffic of the same instance, which the PCIe query must leave out.
            m.add(MIG_GPM.nvlink_bytes.name, {**gi, "direction": direction}, counter(4e9, steps))
        mig = {**gi, "compute_instance": "0", "profile": "1g.10gb", "mig_uuid": f"MIG-6-{instance}"}
        m.add(metrics.MIG_MULTIPROCESSORS.name, mig, f"16x{steps}")
    pod_on_mig = labels(**gpu(6), mig_uuid="MIG-6-7", namespace="ml", pod="infer", container="srv")
    m.add(metrics.POD_INFO.name, pod_on_mig, f"1x{steps}")

    def pod_key(key: tuple[int, str, str, str]) -> dict[str, str]:
        index, namespace, pod, uid = key
        return {**gpu(index), "namespace": namespace, "pod": pod, "pod_uid": uid}

    def per_gpu(values: dict[int, float], **extra: str) -> list[tuple[dict[str, str], float]]:
        return [(labels(**gpu(index), **extra), value) for index, value in values.items()]

    tensor_pipes = {(0, "tensor_hmma"): 0.76, (3, "tensor_hmma"): 0.01, (4, "tensor_imma"): 0.15}
    true_average = {0: 0.9, 1: 0.5, 2: 1.0, 3: 0.95, 4: 0.3, 5: 0.6}
    m.expected = {
        "true_average": per_gpu(true_average, engine="gpu"),
        "busy_rate": per_gpu({**true_average, 1: 0.25}, engine="gpu"),
        "coverage": per_gpu({1: 0.5}, engine="gpu"),
        "old_gauge": per_gpu({4: 0.25}),
        "tensor_rate": per_gpu({0: 0.8, 2: 0.0, 3: 0.01, 4: 0.18}),
        "tensor_kinds": [
            (labels(**gpu(index), pipe=pipe), tensor_pipes.get((index, pipe), 0.0))
            for index in (0, 2, 3, 4)
            for pipe in PIPES
            if pipe.startswith("tensor_")
        ],
        "no_tensor": per_gpu({2: 1.0, 3: 0.95}, engine="gpu"),
        "memory_bound": per_gpu({2: 0.8}),
        "starved": per_gpu({3: 0.95}, engine="gpu"),
        "pod_busy": [(pod_key(key), rate) for key, rate in pods.items()],
        "pod_share": [(pod_key(key), share) for key, share in zip(pods, shares, strict=True)],
        "mig_activity": [
            (labels(**gpu(6), gpu_instance="7"), 0.15),
            (labels(**gpu(6), gpu_instance="8"), 0.25),
        ],
        "mig_profile": [
            (labels(**gpu(6), gpu_instance="7", profile="1g.10gb"), 0.1),
            (labels(**gpu(6), gpu_instance="8", profile="1g.10gb"), 0.2),
        ],
        "mig_pod": [({**pod_on_mig, "gpu_instance": "7"}, 0.1)],
        "nvlink": per_gpu({0: 1e9, 2: 3e8}),
        "mig_pcie": [
            ({**gpu(6), "gpu_instance": "7"}, 5e8),
            ({**gpu(6), "gpu_instance": "8"}, 1e8),
        ],
    }
    return m


def one_hour_model() -> Model:
    """65 minutes; evaluated at 3905 s, so the 1 h windows hold 240 samples."""
    steps = 260
    m = Model(steps, 3905, [], {})
    holders = {10: ("ml", "idle-notebook"), 12: ("ml", "bursty-infer"), 13: ("research", "sleepy")}
    for index, busy in {10: 0.0, 11: 0.0, 12: 0.3, 13: 0.005}.items():
        m.add(BUSY, labels(**gpu(index), engine="gpu"), counter(busy, steps))
        m.add(SAMPLED, labels(**gpu(index), engine="gpu"), counter(1.0, steps))
        if index in holders:
            namespace, pod = holders[index]
            pod_labels = labels(
                **gpu(index), mig_uuid="", namespace=namespace, pod=pod, container="main"
            )
            m.add(metrics.POD_INFO.name, pod_labels, f"1x{steps}")
    # An idle MIG device's pod: not a whole GPU, never in the whole-GPU idle list.
    mig_pod = labels(
        **gpu(14), mig_uuid="MIG-14-1", namespace="ml", pod="mig-user", container="main"
    )
    m.add(metrics.POD_INFO.name, mig_pod, f"1x{steps}")

    def held(index: int, value: float) -> tuple[dict[str, str], float]:
        namespace, pod = holders[index]
        return (
            labels(**gpu(index), mig_uuid="", namespace=namespace, pod=pod, container="main"),
            value,
        )

    m.expected = {
        "idle_count": [({}, 3.0)],
        "allocated_idle": [held(10, 0.0), held(13, 0.005)],
        "idle_gpu_hours": [({}, 1.0 + 1.0 + 0.7 + 0.995)],
    }
    return m


def one_day_model() -> Model:
    """A day and 5 minutes; the 1 d window ends at 86405 s."""
    steps = 86400 // SCRAPE + 20
    m = Model(steps, 86405, [], {})
    for pod, namespace, rate in (("a", "ml", 0.3), ("b", "ml", 0.18), ("c", "research", 0.12)):
        pod_labels = labels(
            **gpu(5), mig_uuid="", namespace=namespace, pod=pod, container="main", pod_uid=pod
        )
        m.add(POD_BUSY, {**pod_labels, "engine": "gpu"}, counter(rate, steps))
    # Busy GPU-hours in a day: 0.48 GPU for ml, 0.12 for research.
    m.expected = {"chargeback": [({"namespace": "ml"}, 11.52), ({"namespace": "research"}, 2.88)]}
    return m


MODELS = (five_minute_model, one_hour_model, one_day_model)


def exp_labels(label_set: dict[str, str]) -> str:
    """promtool's label text; an empty value is no label, as in Prometheus."""
    pairs = sorted((key, value) for key, value in label_set.items() if value)
    return "{" + ", ".join(f'{key}="{value}"' for key, value in pairs) + "}"


def promtool_test(queries: dict[str, str], rule_file: Path) -> dict[str, object]:
    """The promtool unit-test document: every model, each expected check evaluated."""
    groups = []
    for make in MODELS:
        model = make()
        groups.append(
            {
                "interval": f"{SCRAPE}s",
                "input_series": [{"series": s, "values": v} for s, v in model.series],
                "promql_expr_test": [
                    {
                        "expr": f"round(({queries[check]}), 0.001)",
                        "eval_time": f"{model.eval_time}s",
                        "exp_samples": [
                            {"labels": exp_labels(label_set), "value": round(value, 3)}
                            for label_set, value in outputs
                        ],
                    }
                    for check, outputs in model.expected.items()
                ],
            }
        )
    return {"rule_files": [rule_file.name], "evaluation_interval": f"{SCRAPE}s", "tests": groups}


def write_rules(path: Path, exprs: list[str]) -> None:
    rules = [{"record": f"doc:example_{n}", "expr": expr} for n, expr in enumerate(exprs, 1)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs-utilization", "rules": rules}]}))


def run_promtool_test(tmp_path: Path, queries: dict[str, str]) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool")
    # The expressions are evaluated as they stand in the page, not through recorded series:
    # recording rules would be evaluated every 15 s over the day-long model for nothing.
    rule_file = tmp_path / "no_rules.yaml"
    rule_file.write_text("groups: []\n")
    test_file = tmp_path / "doc_examples_test.yaml"
    test_file.write_text(yaml.safe_dump(promtool_test(queries, rule_file), sort_keys=False))
    return subprocess.run(
        [promtool, "test", "rules", test_file.name],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


def evaluated_checks() -> set[str]:
    return {check for make in MODELS for check in make().expected}


# -- tests ---------------------------------------------------------------------------------


def test_the_page_has_enough_promql_examples() -> None:
    found = examples()
    assert len(found) >= 8, f"only {len(found)} promql examples"
    # The extraction sees every promql fence (an unterminated or misspelt one would be lost).
    assert DOC.read_text().count("```promql") == len(found)


def test_every_example_reads_families_of_the_catalog() -> None:
    for example in examples():
        names = set(_METRIC.findall(example.expr))
        assert names, f"example {example.index} reads no nvidia_gpu_ family"
        assert names <= set(metrics.BY_NAME), (example.index, names - set(metrics.BY_NAME))
        # Nothing else that would read as a series name either (a typo in a function name).
        assert unknown_names(example.expr, set()) == set(), (example.index, example.expr)


def test_promtool_accepts_every_example_as_a_recording_rule(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    rule_file = tmp_path / "doc_examples.yaml"
    write_rules(rule_file, [example.expr for example in examples()])
    result = subprocess.run(
        [promtool, "check", "rules", "--lint=all", "--lint-fatal", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"SUCCESS: {len(examples())} rules found" in output, output


def test_every_check_marker_is_evaluated_and_every_evaluation_has_its_example() -> None:
    marked = [example.check for example in examples() if example.check]
    assert len(marked) == len(set(marked)), "a check name is used twice"
    assert set(marked) == evaluated_checks()


def test_promtool_evaluates_the_examples_to_what_the_page_says(tmp_path: Path) -> None:
    result = run_promtool_test(tmp_path, by_check())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS" in output and "FAILED" not in output, output


_GAUGE_AVERAGE = "avg_over_time(nvidia_gpu_utilization_ratio[5m])"


def fleet_share(query: str) -> str:
    """The share of all pods' busy time in the fleet, not of the pod's own GPU."""
    query = query.replace("on (gpu, uuid)", "ignoring (gpu, uuid, namespace, pod, pod_uid)")
    return query.replace("sum by (gpu, uuid) (", "sum (")


@pytest.mark.parametrize(
    ("check", "wrong"),
    [
        # The old gauge: 0.25 for the 30 % GPU.
        ("true_average", lambda queries: _GAUGE_AVERAGE),
        # Busy rate alone: 0.25 for the GPU whose buffer wrapped (true 0.5).
        ("true_average", lambda queries: queries["busy_rate"]),
        # Pods' busy rates instead of their shares.
        ("pod_share", lambda queries: queries["pod_busy"]),
        # A share of the whole fleet instead of the pod's GPU.
        ("pod_share", lambda queries: fleet_share(queries["pod_share"])),
        # Pods grouped by name only: GPU 8's two unnamed pods are added together.
        ("pod_share", lambda queries: queries["pod_share"].replace(", pod_uid)", ")")),
        # `or` instead of `and`: every busy GPU is "starved".
        ("starved", lambda queries: queries["starved"].replace("and on", "or on")),
        # No `on (...)`: the GPM side has no job/instance after max by, nothing matches.
        (
            "memory_bound",
            lambda queries: queries["memory_bound"].replace("and on (gpu, uuid)", "and"),
        ),
        # The idle GPUs without the pod join: GPU 11, held by nobody, shows up.
        ("allocated_idle", lambda queries: queries["idle_count"].replace("count(", "(")),
        # Received instead of sent NVLink bytes.
        ("nvlink", lambda queries: queries["nvlink"].replace("transmit", "receive")),
        # PCIe traffic summed per GPU: GPU 6's two instances are added together.
        ("mig_pcie", lambda queries: queries["mig_pcie"].replace(", gpu_instance)", ")")),
    ],
    ids=[
        "gauge",
        "busy-only",
        "pod-rates",
        "fleet-share",
        "no-pod-uid",
        "starved-or",
        "no-on",
        "no-pod-join",
        "nvlink-receive",
        "mig-pcie-per-gpu",
    ],
)
def test_a_wrong_query_fails_the_evaluation(
    tmp_path: Path, check: str, wrong: Callable[[dict[str, str]], str]
) -> None:
    queries = by_check()
    mutated = wrong(queries)
    assert mutated != queries[check], "the mutation did not change the query"
    result = run_promtool_test(tmp_path, {**queries, check: mutated})
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"promtool passed a wrong {check} query:\n{mutated}"
    # It fails on the values, not on an error: the mutation still parses and evaluates.
    assert "FAILED" in output and "got:" in output, output


# -- figures quoted from the code ------------------------------------------------------------


def label_values(name: str) -> int:
    """How many values an extra label of the activity families takes."""
    if name == "engine":
        return len(UTILIZATION_ENGINES)
    if name == "pipe":
        pipes = [m.label for m in gpm.GPM_METRICS if m.counter == "pipe_active_seconds"]
        assert tuple(pipes) == PIPES
        return len(PIPES)
    if name == "direction":
        return len({m.label for m in gpm.GPM_METRICS if m.throughput})
    raise AssertionError(f"unexpected label {name}")


def series_per_scope(families: tuple[metrics.Family, ...], base: tuple[str, ...]) -> int:
    total = 0
    for family in families:
        assert family.labels[: len(base)] == base, family.name
        count = 1
        for label in family.labels[len(base) :]:
            count *= label_values(label)
        total += count
    return total


def cardinality_table() -> dict[str, int]:
    text = DOC.read_text()
    section = text.split("## Cardinality", 1)[1]
    rows = re.findall(r"^\| `([^`]+)` \| [^|]+ \| (\d+) \|", section, re.MULTILINE)
    return {family: int(count) for family, count in rows}


def ratio_and_counter_ids(asked: tuple[gpm.GpmMetric, ...]) -> tuple[int, int]:
    """How many of the metric ids the reader asks for feed a ratio gauge, and a counter."""
    return sum(1 for m in asked if m.ratio), sum(1 for m in asked if m.counter)


def test_cardinality_table_matches_the_catalog() -> None:
    util = series_per_scope(
        (metrics.UTILIZATION_BUSY, metrics.UTILIZATION_SAMPLED), metrics.GPU_LABELS
    )
    profiling = series_per_scope(GPM.all(), metrics.GPU_LABELS)
    mig = series_per_scope(MIG_GPM.all(), (*metrics.GPU_LABELS, "gpu_instance"))
    # Per container: every label but engine names the container (pod_uid included).
    pod_family = metrics.POD_UTILIZATION_BUSY
    pod = series_per_scope(
        (pod_family,), tuple(name for name in pod_family.labels if name != "engine")
    )
    # A whole GPU has no GPM byte counters and is asked no throughput; a GPU instance has both.
    assert GPM.pcie_bytes is None and GPM.nvlink_bytes is None
    assert MIG_GPM.pcie_bytes is not None and MIG_GPM.nvlink_bytes is not None
    assert tuple(m for m in gpm.GPM_METRICS if not m.throughput) == gpm.GPU_METRICS
    for scope, asked in ((GPM, gpm.GPU_METRICS), (MIG_GPM, gpm.GPM_METRICS)):
        for m in asked:  # every id the reader asks for lands in a family of that scope
            for attribute in (m.ratio, m.counter):
                assert not attribute or getattr(scope, attribute) is not None, (m, attribute)
    # The same figures from what the GPM reader emits: one ratio and/or one counter per id.
    gpu_ratios, gpu_counters = ratio_and_counter_ids(gpm.GPU_METRICS)
    ratios, counters = ratio_and_counter_ids(gpm.GPM_METRICS)
    assert gpu_ratios + gpu_counters == profiling
    assert ratios + counters == mig
    table = cardinality_table()
    assert table == {
        "nvidia_gpu_utilization_*_seconds_total": util,
        "nvidia_gpu_profiling_*": profiling,
        "nvidia_gpu_mig_profiling_*": mig,
        "nvidia_gpu_pod_utilization_busy_seconds_total": pod,
    }
    text = " ".join(DOC.read_text().split())
    assert (
        f"the {len(gpm.GPM_METRICS)} GPM metric ids of `GPM_METRICS`: {ratios} with a ratio "
        f"gauge, {counters} with a counter" in text
    )
    assert (
        f"the {len(gpm.GPU_METRICS)} of `GPU_METRICS`, all but the PCIe and NVLink throughput: "
        f"{gpu_ratios} with a ratio gauge, {gpu_counters} with a counter" in text
    )
    # The table's "how counted" cells.
    assert f"{gpu_ratios} ratio gauges (unlabelled), {profiling - gpu_ratios} seconds" in text
    assert f"+ {mig - profiling} byte counters" in text
    assert f"adds {util + profiling} series, an A100 or T4 adds {util}" in text
    assert f"adds {7 * mig} (7 x {mig})" in text
    assert f"of which {7 * mig} are the GPU instances' GPM series" in text


def test_the_page_names_the_profiling_metrics_without_a_pair() -> None:
    """The gauge-only and counter-only metrics the page names are those of the reader."""
    gauge_only = sorted({m.ratio for m in gpm.GPU_METRICS if m.ratio and not m.counter})
    counter_only = sorted(
        {m.counter.removesuffix("_seconds") for m in gpm.GPU_METRICS if m.counter and not m.ratio}
    )
    assert gauge_only and counter_only
    text = " ".join(DOC.read_text().split())
    words = {2: "Two", 3: "Three", 4: "Four"}
    assert f"{words[len(gauge_only) + len(counter_only)]} metrics have only one half" in text
    for name in gauge_only:
        assert f"`{name}` has only the gauge." in text, name
    for name in counter_only:
        assert f"`{name}` has only the counter" in text, name
        # ... and indeed there is no such gauge in the catalog, whole GPU or MIG.
        assert f"nvidia_gpu_profiling_{name}_ratio" not in metrics.BY_NAME
        assert f"nvidia_gpu_mig_profiling_{name}_ratio" not in metrics.BY_NAME


#: The scenarios of `make bench-collection` whose series per GPU the page quotes.
_QUOTED_SCENARIOS = "t4,a100-mig,h100-nvlink,h100-mig"
_BUDGET = 120


def measured_series_per_gpu() -> dict[str, tuple[int, int | None]]:
    """scenario -> (series of the busiest whole GPU, of the busiest MIG GPU or None)."""
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/collection.py",
            "--rounds",
            "1",
            "--scenarios",
            _QUOTED_SCENARIOS,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    header = "| series per GPU (whole / MIG) |"
    assert header in result.stdout, result.stdout  # the column the page names
    rows = re.findall(r"^\| ([\w-]+) \| \d+ \| \d+ \| (\d+) / (\d+|-) \|", result.stdout, re.M)
    return {
        scenario: (int(whole), None if mig == "-" else int(mig)) for scenario, whole, mig in rows
    }


def test_the_page_quotes_the_measured_series_per_gpu() -> None:
    measured = measured_series_per_gpu()
    assert set(measured) == set(_QUOTED_SCENARIOS.split(",")), measured
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^bench-collection:.*\n\t.*benchmarks/collection\.py", makefile, re.M)
    h100, _ = measured["h100-nvlink"]
    a100, a100_mig = measured["a100-mig"]
    t4, _ = measured["t4"]
    _, h100_mig = measured["h100-mig"]
    # The budget holds for every whole GPU with default settings (the benchmark's settings).
    assert max(h100, a100, t4) < _BUDGET, measured
    text = " ".join(DOC.read_text().split())
    assert f"The budget is under {_BUDGET} series per GPU with default settings." in text
    assert "`make bench-collection` measures the series per GPU" in text
    assert "in its column `series per GPU (whole / MIG)`" in text
    assert (
        f"A whole H100 with 18 NVLink links measures {h100}, an A100 {a100} and a T4 {t4}." in text
    )
    assert f"An A100 with 7 MIG devices measures {a100_mig}." in text
    assert f"An H100 with 7 MIG devices measures {h100_mig}," in text


def test_the_page_quotes_the_settings_of_the_code() -> None:
    text = " ".join(DOC.read_text().split())
    assert f"`--collection.interval` (default {config.DEFAULT_INTERVAL_SECONDS:g} s)" in text
    assert f"({config.DEFAULT_INTERVAL_SECONDS:g} s by default)" in text
    assert f"at least {gpm.MIN_INTERVAL_SECONDS * 1000:g} ms apart" in text
    flags = {flag for flag, _, _ in cli.FLAGS} | {"--simulate"}
    quoted = set(re.findall(r"`(?:gpu-node-exporter )?(--[a-z][\w.-]*?)(?:=[^`]*)?`", text))
    assert quoted, "the page names no flag"
    assert quoted <= flags, quoted - flags
