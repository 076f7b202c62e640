"""The dcgm-exporter compatibility rules (alerts/compat/dcgm-exporter.yaml), fast checks.

What is checked here, and why:
- the committed rule file and the table in docs/dcgm-migration.md are what
  scripts/gen_dcgm_compat.py generates (CI fails on drift), and --check catches drift;
- promtool accepts the file with no lint findings, and its unit tests
  (alerts/tests/dcgm_compat_test.yaml: labels, MIG instances, pods, units, Xid codes) pass;
- every series a compat rule reads is in the exporter's catalog or is one of our recording
  rules, so a renamed metric breaks this test instead of a team's dashboard;
- every metric of dcgm-exporter's default counters (and of the opt-in rows it ships
  commented out) is either mapped or listed as not mappable with a reason: nothing is
  dropped silently;
- each check catches what it is for (negative self-tests).
The values against a real Prometheus: tests/e2e/test_dcgm_compat.py.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.promql import recording_rule_names, unknown_names
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "scripts" / "gen_dcgm_compat.py"
RULE_FILE = ROOT / "alerts" / "compat" / "dcgm-exporter.yaml"
DOC_FILE = ROOT / "docs" / "dcgm-migration.md"
UNIT_TESTS = ROOT / "alerts" / "tests" / "dcgm_compat_test.yaml"


def load_generator() -> ModuleType:
    """scripts/ is not a package: load the generator from its path."""
    spec = importlib.util.spec_from_file_location("gen_dcgm_compat", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


gen = load_generator()

# dcgm-exporter 4.8.2, etc/default-counters.csv: the 26 active rows (25 metrics, 1 label).
DEFAULT_COUNTERS = (
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_MEMORY_TEMP",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_ENC_UTIL",
    "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_RESERVED",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    "DCGM_FI_DEV_VGPU_LICENSE_STATUS",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "DCGM_FI_DRIVER_VERSION",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "DCGM_FI_PROF_PCIE_TX_BYTES",
    "DCGM_FI_PROF_PCIE_RX_BYTES",
)
# Rows the same CSV ships commented out (opt-in), the exporter-computed DCGM_EXP_* included.
OPT_IN = (
    "DCGM_FI_DEV_POWER_VIOLATION",
    "DCGM_FI_DEV_THERMAL_VIOLATION",
    "DCGM_FI_DEV_SYNC_BOOST_VIOLATION",
    "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION",
    "DCGM_FI_DEV_LOW_UTIL_VIOLATION",
    "DCGM_FI_DEV_RELIABILITY_VIOLATION",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    "DCGM_FI_DEV_RETIRED_SBE",
    "DCGM_FI_DEV_RETIRED_DBE",
    "DCGM_FI_DEV_RETIRED_PENDING",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_L0",
    "DCGM_FI_NVML_VERSION",
    "DCGM_FI_DEV_BRAND",
    "DCGM_FI_DEV_SERIAL",
    "DCGM_FI_DEV_OEM_INFOROM_VER",
    "DCGM_FI_DEV_ECC_INFOROM_VER",
    "DCGM_FI_DEV_POWER_INFOROM_VER",
    "DCGM_FI_DEV_INFOROM_IMAGE_VER",
    "DCGM_FI_DEV_VBIOS_VERSION",
    "DCGM_FI_PROF_SM_ACTIVE",
    "DCGM_FI_PROF_SM_OCCUPANCY",
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE",
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE",
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE",
    "DCGM_EXP_CLOCK_EVENTS_COUNT",
    "DCGM_EXP_XID_ERRORS_COUNT",
    "DCGM_EXP_GPU_HEALTH_STATUS",
    "DCGM_EXP_P2P_STATUS",
)
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def compat_rules(path: Path = RULE_FILE) -> list[dict[str, str]]:
    document = yaml.safe_load(path.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def unknown_reads(rule_list: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """record -> series its expression reads that neither the exporter nor a recording rule
    of ours (this file's included) defines."""
    pairs = list(rule_list)
    recorded = recording_rule_names() | {record for record, _ in pairs}
    found = {record: unknown_names(expr, recorded) for record, expr in pairs}
    return {record: names for record, names in found.items() if names}


def unaccounted(
    expected: Sequence[str], mapped: Iterable[str], not_mapped: Iterable[str]
) -> list[str]:
    """dcgm-exporter metrics neither mapped nor explained, or both at once."""
    mapped_set = set(mapped) | {gen.DRIVER_VERSION_LABEL}
    explained = set(not_mapped)
    problems = [
        f"{name}: neither mapped nor explained"
        for name in expected
        if name not in mapped_set and name not in explained
    ]
    problems += [f"{name}: mapped and explained" for name in sorted(mapped_set & explained)]
    return problems


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


# -- generated files ------------------------------------------------------------------------


def test_committed_files_are_what_the_generator_writes() -> None:
    result = run_generator("--check")
    assert result.returncode == 0, result.stderr
    assert RULE_FILE.read_text() == gen.render_rule_file()
    assert gen.render_rule_file() == gen.render_rule_file(), "generation is not deterministic"


def test_check_reports_a_stale_rule_file_and_a_stale_doc(tmp_path: Path) -> None:
    rules = tmp_path / "dcgm-exporter.yaml"
    rules.write_text(RULE_FILE.read_text().replace("/ 2^20", "/ 1e6", 1))
    result = run_generator("--check", "--output", str(rules))
    assert result.returncode == 1
    assert f"{rules} is stale" in result.stderr
    rules.write_text(RULE_FILE.read_text())
    assert run_generator("--check", "--output", str(rules)).returncode == 0

    doc = tmp_path / "dcgm-migration.md"
    doc.write_text(DOC_FILE.read_text().replace("| `DCGM_FI_DEV_FB_USED` |", "| `FB_USED` |"))
    result = run_generator("--check", "--doc", str(doc))
    assert result.returncode == 1
    assert f"{doc} is stale" in result.stderr


def test_hostname_variant_goes_to_its_own_file(tmp_path: Path) -> None:
    """dcgm-exporter 4.8.3 renamed Hostname to hostname: a variant file, never the
    committed one."""
    out = tmp_path / "dcgm-exporter-hostname.yaml"
    result = run_generator("--hostname-label", "hostname", "--output", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert '"hostname", "$1", "node", "(.+)"' in text
    assert "Hostname" not in text
    assert [r["record"] for r in compat_rules(out)] == [r["record"] for r in compat_rules()]
    refused = run_generator("--hostname-label", "hostname")
    assert refused.returncode == 2
    assert "--output" in refused.stderr


def test_doc_lists_every_mapped_and_unmapped_metric() -> None:
    text = DOC_FILE.read_text()
    section = text.split("<!-- dcgm-compat:start -->", 1)[1].split("<!-- dcgm-compat:end -->")[0]
    for mapping in gen.MAPPINGS:
        assert f"| `{mapping.name}` |" in section, mapping.name
    for item in gen.NOT_MAPPED:
        assert f"| `{item.name}` |" in section, item.name


# -- the rule file --------------------------------------------------------------------------


def test_promtool_check_rules_is_clean() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULE_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warn" not in output.lower(), output
    assert f"SUCCESS: {len(compat_rules())} rules found" in output, output


def test_the_compat_unit_tests_run_with_the_others() -> None:
    """alerts/tests/dcgm_compat_test.yaml runs in tests/alerts/test_rules.py with every other
    promtool test file; it must be there and load the compat rule file."""
    assert UNIT_TESTS.parent == ROOT / "alerts" / "tests"
    document = yaml.safe_load(UNIT_TESTS.read_text())
    loaded = [(UNIT_TESTS.parent / path).resolve() for path in document["rule_files"]]
    assert RULE_FILE.resolve() in loaded, document["rule_files"]


def test_one_rule_per_mapping_after_the_helpers() -> None:
    records = [rule["record"] for rule in compat_rules()]
    assert records == [*gen.HELPERS, *(m.name for m in gen.MAPPINGS)]
    assert len(records) == len(set(records))
    assert all(_METRIC_NAME.match(record) for record in records)
    assert all(set(rule) == {"record", "expr"} for rule in compat_rules())
    # the helpers follow the level:metric:operation convention; the compat names are dcgm's
    assert all(helper.count(":") == 2 for helper in gen.HELPERS)
    assert recording_rule_names() >= set(records), "tests/promql.py does not see the file"


def test_compat_rules_read_only_known_series() -> None:
    pairs = [(rule["record"], rule["expr"]) for rule in compat_rules()]
    assert unknown_reads(pairs) == {}


def test_a_mapping_to_an_unknown_series_is_caught() -> None:
    bad = gen.Mapping(
        "DCGM_FI_DEV_GPU_TEMP", "C", "nvidia_gpu_temperature_kelvin", "A renamed metric."
    )
    found = unknown_reads(gen.rules(mappings=[bad]))
    assert found == {"DCGM_FI_DEV_GPU_TEMP": {"nvidia_gpu_temperature_kelvin"}}


# -- the tables -----------------------------------------------------------------------------


def test_every_dcgm_exporter_metric_is_mapped_or_explained() -> None:
    mapped = [m.name for m in gen.MAPPINGS]
    not_mapped = [n.name for n in gen.NOT_MAPPED]
    assert unaccounted(DEFAULT_COUNTERS, mapped, not_mapped) == []
    assert unaccounted(OPT_IN, mapped, not_mapped) == []
    assert len(DEFAULT_COUNTERS) == 26


def test_an_unaccounted_metric_is_caught() -> None:
    mapped = [m.name for m in gen.MAPPINGS if m.name != "DCGM_FI_DEV_FB_USED"]
    not_mapped = [n.name for n in gen.NOT_MAPPED if n.name != "DCGM_FI_DEV_VGPU_LICENSE_STATUS"]
    assert unaccounted(DEFAULT_COUNTERS, mapped, not_mapped) == [
        "DCGM_FI_DEV_FB_USED: neither mapped nor explained",
        "DCGM_FI_DEV_VGPU_LICENSE_STATUS: neither mapped nor explained",
    ]
    assert unaccounted(DEFAULT_COUNTERS, [*mapped, "DCGM_FI_DEV_BRAND"], ["DCGM_FI_DEV_BRAND"])[
        -1
    ] == ("DCGM_FI_DEV_BRAND: mapped and explained")


def test_default_flags_say_what_dcgm_exporter_enables() -> None:
    for mapping in gen.MAPPINGS:
        assert mapping.default == (mapping.name in DEFAULT_COUNTERS), mapping.name
    for item in gen.NOT_MAPPED:
        assert item.default == (item.name in DEFAULT_COUNTERS), item.name


def test_tables_validate() -> None:
    assert gen.validate() == []


def test_validate_catches_bad_entries() -> None:
    good = gen.MAPPINGS[0]
    bad = [
        good,
        good,  # twice
        gen.Mapping("DCGM-FI-BAD", "C", "nvidia_gpu_temperature_celsius", "Bad name here."),
        gen.Mapping("DCGM_FI_X", "MiB", "nvidia_gpu_memory_used_bytes", "Bad unit.", "/ 2**20"),
        gen.Mapping("DCGM_FI_Y", "MiB", "nvidia_gpu_memory_used_bytes", "No MIG.", mig="instance"),
        gen.Mapping("DCGM_FI_Z", "", "nvidia_gpu_memory_used_bytes", "Why"),
    ]
    unexplained = [gen.NotMapped("DCGM_FI_DEV_SM_CLOCK", "no"), gen.NotMapped("DCGM_W", "no")]
    problems = "\n".join(gen.validate(bad, unexplained))
    assert f"{good.name} is listed twice" in problems
    assert "DCGM_FI_DEV_SM_CLOCK is listed twice" in problems  # mapped and not mapped
    assert "'DCGM-FI-BAD' is not a valid metric name" in problems
    assert "DCGM_FI_X: convert '/ 2**20'" in problems
    assert "DCGM_FI_Y: mig_source is needed" in problems
    assert "DCGM_FI_Z: say its unit" in problems
    assert "DCGM_W: the reason it cannot be mapped is too short" in problems


@pytest.mark.parametrize("mapping", gen.MAPPINGS, ids=lambda m: m.name)
def test_conversion_matches_the_dcgm_unit(mapping: object) -> None:
    """Our series are in base units (bytes, hertz, joules, seconds, ratios); dcgm-exporter's
    unit decides the one conversion that fits."""
    conversions = {
        "MiB": "/ 2^20",
        "MHz": "/ 1e6",
        "mJ": "* 1000",
        "ns": "* 1e9",
        "MB/s": "/ 1e6",
    }
    assert isinstance(mapping, gen.Mapping)
    expected = "* 100" if mapping.unit == "%" else conversions.get(mapping.unit, "")
    assert mapping.convert == expected, f"{mapping.name} in {mapping.unit}"


# -- profiling fields (GPM) -----------------------------------------------------------------

# dcgm-exporter's profiling fields and what each must read, written here independently of the
# table: (per GPU, per MIG GPU instance). Ratios 0-1 in both, so no conversion.
PROFILING = {
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": (
        "nvidia_gpu_profiling_graphics_active_ratio",
        "nvidia_gpu_mig_profiling_graphics_active_ratio",
    ),
    "DCGM_FI_PROF_SM_ACTIVE": (
        "nvidia_gpu_profiling_sm_active_ratio",
        "nvidia_gpu_mig_profiling_sm_active_ratio",
    ),
    "DCGM_FI_PROF_SM_OCCUPANCY": (
        "nvidia_gpu_profiling_sm_occupancy_ratio",
        "nvidia_gpu_mig_profiling_sm_occupancy_ratio",
    ),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": (
        "nvidia_gpu_profiling_tensor_active_ratio",
        "nvidia_gpu_mig_profiling_tensor_active_ratio",
    ),
    "DCGM_FI_PROF_DRAM_ACTIVE": (
        "nvidia_gpu_profiling_dram_active_ratio",
        "nvidia_gpu_mig_profiling_dram_active_ratio",
    ),
    **{
        f"DCGM_FI_PROF_PIPE_{pipe.upper()}_ACTIVE": (
            f'rate(nvidia_gpu_profiling_pipe_active_seconds_total{{pipe="{pipe}"}}[1m])',
            f'rate(nvidia_gpu_mig_profiling_pipe_active_seconds_total{{pipe="{pipe}"}}[1m])',
        )
        for pipe in ("fp64", "fp32", "fp16")
    },
}


def by_name() -> dict[str, object]:
    return {m.name: m for m in gen.MAPPINGS}


@pytest.mark.parametrize("name", sorted(PROFILING))
def test_profiling_fields_read_gpm_per_gpu_and_per_gpu_instance(name: str) -> None:
    mapping = by_name()[name]
    assert isinstance(mapping, gen.Mapping)
    gpu, instance = PROFILING[name]
    assert (mapping.source, mapping.mig, mapping.mig_source) == (gpu, "instance", instance)
    assert mapping.convert == "" and "ratio" in mapping.unit
    assert mapping.extra_labels == ()
    # the notes say where it exists and how its time base differs from DCGM's
    for phrase in ("Hopper and newer only", "absent on A100", "profiling module", "own rate"):
        assert phrase in mapping.notes, (name, phrase)


def test_profiling_families_and_pipes_are_in_the_catalog() -> None:
    """The names above are the exporter's (a rename breaks this test, not a dashboard)."""
    from exporter import metrics_activity

    scopes = (metrics_activity.GPM_FAMILIES, metrics_activity.MIG_GPM_FAMILIES)
    families = {family.name for scope in scopes for family in scope.all()}
    for gpu, instance in PROFILING.values():
        for expr in (gpu, instance):
            name = re.sub(r"^rate\((\w+)\{.*$", r"\1", expr)
            assert name in families, expr
            pipe = re.search(r'pipe="(\w+)"', expr)
            assert pipe is None or pipe.group(1) in metrics_activity.PIPES, expr


def test_no_profiling_field_is_left_unmapped() -> None:
    """GPM gives every DCP activity field dcgm-exporter ships; none is explained away."""
    mapped = {m.name for m in gen.MAPPINGS}
    assert set(PROFILING) <= mapped
    assert not [n.name for n in gen.NOT_MAPPED if n.name.startswith("DCGM_FI_PROF_")]
    assert not [n.name for n in gen.NOT_MAPPED if "no such value" in n.reason]


def test_pcie_bytes_have_no_series_on_mig_instances() -> None:
    """DCGM answers N/A for PCIe bytes on a MIG instance (NVIDIA/DCGM#88): no series, and
    GPM's per-instance PCIe counter is not substituted."""
    for name in ("DCGM_FI_PROF_PCIE_TX_BYTES", "DCGM_FI_PROF_PCIE_RX_BYTES"):
        mapping = by_name()[name]
        assert isinstance(mapping, gen.Mapping)
        assert mapping.mig == "none", name
        assert "nvidia_gpu_mig_profiling_pcie" not in mapping.source, name


def test_gpu_util_stays_the_gauge_and_names_the_busy_counter() -> None:
    mapping = by_name()["DCGM_FI_DEV_GPU_UTIL"]
    assert isinstance(mapping, gen.Mapping)
    assert (mapping.source, mapping.convert, mapping.mig) == (
        "nvidia_gpu_utilization_ratio",
        "* 100",
        "none",
    )
    assert 'nvidia_gpu_utilization_busy_seconds_total{engine="gpu"}' in mapping.notes


def test_a_pipe_that_gpm_does_not_measure_is_refused() -> None:
    table = sys.modules["dcgm_compat_table"]
    with pytest.raises(ValueError, match="fp8"):
        table._pipe("DCGM_FI_PROF_PIPE_FP8_ACTIVE", "fp8", "FP8")


# The values in promtool: a whole Hopper GPU, a Hopper GPU in MIG mode with two GPU instances
# and an A100 (no GPM). Counters grow linearly, so rate() is exact: 15 s samples.
_TARGET = 'instance="10.0.0.9:9445",job="gpu-node-exporter",node="h"'
_GPUS = {
    "GPU-h0": ('gpu="0"', "NVIDIA H100 80GB HBM3", "00000000:18:00.0"),
    "GPU-h1": ('gpu="1"', "NVIDIA H100 80GB HBM3", "00000000:2A:00.0"),
    "GPU-a2": ('gpu="2"', "NVIDIA A100-SXM4-80GB", "00000000:3A:00.0"),
}
_INSTANCES = {"1": "3g.40gb", "2": "2g.20gb"}  # on GPU-h1


def _on(uuid: str, extra: str = "") -> str:
    return f'{_TARGET},{_GPUS[uuid][0]},uuid="{uuid}"{extra}'


def _out(name: str, uuid: str, gi: str = "") -> str:
    gpu, model, bus = _GPUS[uuid]
    index = gpu.split('"')[1]
    labels = (
        f'instance="10.0.0.9:9445",job="gpu-node-exporter",{gpu},UUID="{uuid}",'
        f'device="nvidia{index}",modelName="{model}",Hostname="h",pci_bus_id="{bus}",'
        'DCGM_FI_DRIVER_VERSION="560.35.03"'
    )
    if gi:
        labels += f',GPU_I_ID="{gi}",GPU_I_PROFILE="{_INSTANCES[gi]}"'
    return f"{name}{{{labels}}}"


def _profiling_unit_test() -> dict[str, object]:
    series: list[tuple[str, str]] = []
    for uuid, (_, model, bus) in _GPUS.items():
        mig = "enabled" if uuid == "GPU-h1" else "disabled"
        info = (
            f'{_on(uuid)},model="{model}",driver_version="560.35.03",pci_bus_id="{bus}",'
            f'mig_mode="{mig}"'
        )
        series.append((f"nvidia_gpu_info{{{info}}}", "1x20"))
        series.append((f"nvidia_gpu_pcie_transmit_bytes_total{{{_on(uuid)}}}", "0+15360x20"))
    for gi, profile in _INSTANCES.items():
        extra = f',gpu_instance="{gi}",compute_instance="0",profile="{profile}",mig_uuid="MIG-{gi}"'
        series.append((f"nvidia_gpu_mig_memory_total_bytes{{{_on('GPU-h1', extra)}}}", "1e10x20"))
    h0, gi1, gi2 = (
        _on("GPU-h0"),
        _on("GPU-h1", ',gpu_instance="1"'),
        _on("GPU-h1", ',gpu_instance="2"'),
    )
    series += [
        (f"nvidia_gpu_profiling_graphics_active_ratio{{{h0}}}", "0.75x20"),
        (f"nvidia_gpu_profiling_sm_active_ratio{{{h0}}}", "0.5x20"),  # a swap shows
        (f"nvidia_gpu_mig_profiling_graphics_active_ratio{{{gi1}}}", "0.375x20"),
        (f"nvidia_gpu_mig_profiling_graphics_active_ratio{{{gi2}}}", "0.125x20"),
        (f'nvidia_gpu_profiling_pipe_active_seconds_total{{{h0},pipe="fp64"}}', "0+3.75x20"),
        (f'nvidia_gpu_profiling_pipe_active_seconds_total{{{h0},pipe="fp32"}}', "0+7.5x20"),
        (f'nvidia_gpu_mig_profiling_pipe_active_seconds_total{{{gi1},pipe="fp64"}}', "0+1.875x20"),
        (f'nvidia_gpu_mig_profiling_pipe_active_seconds_total{{{gi2},pipe="fp64"}}', "0+0.9375x20"),
        (f'nvidia_gpu_mig_profiling_pipe_active_seconds_total{{{gi1},pipe="fp32"}}', "0+11.25x20"),
        # GPM's per-instance PCIe bytes: DCGM shows none per instance, nor do we
        (f'nvidia_gpu_mig_profiling_pcie_bytes_total{{{gi1},direction="transmit"}}', "0+1500x20"),
    ]

    def case(name: str, *samples: tuple[str, str, float]) -> dict[str, object]:
        expected = [{"labels": _out(name, uuid, gi), "value": v} for uuid, gi, v in samples]
        return {"expr": name, "eval_time": "3m", "exp_samples": expected}

    return {
        "rule_files": [str(RULE_FILE)],
        "evaluation_interval": "15s",
        "tests": [
            {
                "name": "profiling fields per GPU and per GPU instance; none on the A100",
                "interval": "15s",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": [
                    case(
                        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
                        ("GPU-h0", "", 0.75),
                        ("GPU-h1", "1", 0.375),
                        ("GPU-h1", "2", 0.125),
                    ),
                    case("DCGM_FI_PROF_SM_ACTIVE", ("GPU-h0", "", 0.5)),
                    case(
                        "DCGM_FI_PROF_PIPE_FP64_ACTIVE",
                        ("GPU-h0", "", 0.25),
                        ("GPU-h1", "1", 0.125),
                        ("GPU-h1", "2", 0.0625),
                    ),
                    case(
                        "DCGM_FI_PROF_PIPE_FP32_ACTIVE",
                        ("GPU-h0", "", 0.5),
                        ("GPU-h1", "1", 0.75),
                    ),
                    case("DCGM_FI_PROF_PIPE_FP16_ACTIVE"),
                    case(
                        "DCGM_FI_PROF_PCIE_TX_BYTES",
                        ("GPU-h0", "", 1024.0),
                        ("GPU-a2", "", 1024.0),
                    ),
                ],
            }
        ],
    }


def run_promtool_test(document: dict[str, object], path: Path) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool")
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return subprocess.run(
        [promtool, "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_profiling_values_per_gpu_and_gpu_instance_in_promtool(tmp_path: Path) -> None:
    result = run_promtool_test(_profiling_unit_test(), tmp_path / "profiling_test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_profiling_promtool_test_catches_a_wrong_value(tmp_path: Path) -> None:
    document = _profiling_unit_test()
    text = yaml.safe_dump(document).replace("value: 0.375", "value: 0.125", 1)
    result = run_promtool_test(yaml.safe_load(text), tmp_path / "wrong_test.yaml")
    assert result.returncode != 0
    assert "DCGM_FI_PROF_GR_ENGINE_ACTIVE" in result.stdout + result.stderr
