"""Generate the dcgm-exporter compatibility rules and their documentation from one table.

`python scripts/gen_dcgm_compat.py` writes alerts/compat/dcgm-exporter.yaml (a Prometheus rule
file) and the block between `<!-- dcgm-compat:start -->` and `<!-- dcgm-compat:end -->` in
docs/dcgm-migration.md; `--check` exits 1 when either is stale (CI).
`--hostname-label hostname --output FILE` writes a variant for dashboards made for
dcgm-exporter 4.8.3 and later, which renamed `Hostname` to `hostname`.

The single source is MAPPINGS (dcgm-exporter metric -> our series, unit conversion, notes) and
NOT_MAPPED (dcgm-exporter metrics we cannot source, with the reason). Everything else is
derived: the helper rules that give every compat series dcgm-exporter's labels, one recording
rule per mapping, and the two documentation tables.

How a compat series is built (see docs/dcgm-migration.md for the why):

1. `dcgm_gpu:nvidia_gpu_info:relabel`: one series per GPU with dcgm-exporter's identity labels
   (UUID, device, modelName, Hostname, pci_bus_id, DCGM_FI_DRIVER_VERSION) made from
   nvidia_gpu_info; every target label (instance, job, cluster, ...) is kept.
2. `dcgm_entity:nvidia_gpu_info:relabel`: what dcgm-exporter's default `-d f` monitors: a GPU
   without MIG instances, or each GPU instance (GPU_I_ID, GPU_I_PROFILE) of a MIG GPU.
3. `dcgm_entity:nvidia_gpu_pod_info:relabel`: the containers holding each of those, from
   nvidia_gpu_pod_info (a MIG device is mapped to its GPU instance).
4. `dcgm_series:nvidia_gpu_info:relabel`: entity x container (or the entity alone): the label
   set of every compat series, value 1.
5. Each DCGM_* rule multiplies (4) by its source, keyed by (node, uuid) - or by
   (node, uuid, GPU_I_ID) where the value is per GPU instance - and drops node and uuid.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from exporter import metrics
from exporter.docs import replace_section

# scripts/ is not a package: the table next to this file is found through the script's folder
# (also when a test loads this file by path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dcgm_compat_table import (
    DRIVER_VERSION_LABEL,
    ENTITY,
    GPU,
    HELPERS,
    MAPPINGS,
    NOT_MAPPED,
    POD,
    SERIES,
    XID_CODE,
    XID_LATEST,
    Mapping,
    NotMapped,
)

ROOT = Path(__file__).resolve().parent.parent
RULE_FILE = ROOT / "alerts" / "compat" / "dcgm-exporter.yaml"
DOC_FILE = ROOT / "docs" / "dcgm-migration.md"
DOC_SECTION = "dcgm-compat"
GROUP = "dcgm-exporter-compat"
MAX_XID_DIGITS = 4  # the Xid code is rebuilt from its label digit by digit: codes < 10000


_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_CONVERT = re.compile(r"^(|[*/] (\d+(\.\d+)?(e\d+)?|2\^\d+))$")


@dataclass(frozen=True, slots=True)
class Variant:
    """What differs between installations: the name of the host label."""

    hostname_label: str = "Hostname"

    @property
    def identity_labels(self) -> tuple[str, ...]:
        """Labels the GPU helper adds; `gpu` and `pci_bus_id` keep their names."""
        return (
            "UUID",
            "device",
            "modelName",
            self.hostname_label,
            "pci_bus_id",
            "DCGM_FI_DRIVER_VERSION",
        )


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in text.splitlines())


def _label_replace(expr: str, dst: str, replacement: str, src: str, regex: str) -> str:
    return f'label_replace(\n{_indent(expr, 2)},\n  "{dst}", "{replacement}", "{src}", "{regex}"\n)'


def _gpu_rule(variant: Variant) -> str:
    """One series per GPU with dcgm-exporter's identity labels (value 1). The host is the
    scrape config's `node` label, or the host part of `instance` where there is none."""
    dropped = [label for label in metrics.INFO_LABELS if label not in ("gpu", "uuid", "pci_bus_id")]
    host = variant.hostname_label
    expr = metrics.INFO.name
    expr = _label_replace(expr, host, "$1", "instance", "(.*?)(?::[0-9]+)?")
    expr = _label_replace(expr, host, "$1", "node", "(.+)")
    expr = _label_replace(expr, "UUID", "$1", "uuid", "(.+)")
    expr = _label_replace(expr, "device", "nvidia$1", "gpu", "(.+)")
    expr = _label_replace(expr, "modelName", "$1", "model", "(.+)")
    expr = _label_replace(expr, DRIVER_VERSION_LABEL, "$1", "driver_version", "(.+)")
    return f"max without ({', '.join(dropped)}) (\n{_indent(expr, 2)}\n)"


def _gi_id(expr: str) -> str:
    return f'label_replace({expr}, "GPU_I_ID", "$1", "gpu_instance", "(.+)")'


def _entity_rule(variant: Variant) -> str:
    mig = metrics.MIG_MEMORY_TOTAL.name
    gi = _label_replace(_gi_id(mig), "GPU_I_PROFILE", "$1", "profile", "(.+)")
    mig_only = ", ".join(label for label in metrics.MIG_LABELS if label not in ("gpu", "uuid"))
    identity = ", ".join(variant.identity_labels)
    return (
        "# GPUs without MIG instances ...\n"
        f"  ({GPU} unless on (node, uuid) {mig})\n"
        "or\n"
        "# ... and every GPU instance of the others.\n"
        "  (\n"
        f"      group without ({mig_only}) (\n"
        f"{_indent(gi, 8)}\n"
        "      )\n"
        f"    * on (node, uuid) group_left ({identity})\n"
        f"      topk by (node, uuid) (1, {GPU})\n"
        "  )"
    )


def _pod_rule() -> str:
    pods = metrics.POD_INFO.name
    mig = metrics.MIG_MEMORY_TOTAL.name
    return (
        "# Containers holding a whole GPU ...\n"
        f'  max without (mig_uuid) ({pods}{{mig_uuid=""}})\n'
        "or\n"
        "# ... and those holding a MIG device, on its GPU instance.\n"
        "  max without (mig_uuid) (\n"
        f'      {pods}{{mig_uuid!=""}}\n'
        "    * on (node, uuid, mig_uuid) group_left (GPU_I_ID)\n"
        f"      group by (node, uuid, mig_uuid, GPU_I_ID) ({_gi_id(mig)})\n"
        "  )"
    )


def _series_rule(variant: Variant) -> str:
    copied = ", ".join((*variant.identity_labels, "GPU_I_PROFILE"))
    return (
        "# An entity once per container holding it (time-shared GPUs: one series per pod) ...\n"
        "  (\n"
        f"      {POD}\n"
        f"    * on (node, uuid, GPU_I_ID) group_left ({copied})\n"
        f"      topk by (node, uuid, GPU_I_ID) (1, {ENTITY})\n"
        "  )\n"
        "or\n"
        "# ... or once, without pod labels, when no container holds it.\n"
        f"  ({ENTITY} unless on (node, uuid, GPU_I_ID) {POD})"
    )


def _xid_latest_rule() -> str:
    last_seen = metrics.XID_LAST_SEEN.name
    return f'topk by (node, uuid) (\n  1, max by (node, uuid, xid) ({last_seen}{{uuid!=""}})\n)'


def _xid_code_rule() -> str:
    """The xid label as the value: PromQL cannot parse a label, so add up its digits, each
    found with a regex on the label (ones: `[0-9]*7` -> 7, tens: `[0-9]*7[0-9]` -> 70 ...)."""
    positions = []
    for position in range(MAX_XID_DIGITS):
        tail = "[0-9]" * position
        weight = 10**position
        terms = [
            f'{XID_LATEST}{{xid=~"[0-9]*{digit}{tail}"}} * 0 + {digit * weight}'
            for digit in range(1, 10)
        ]
        terms.append(f"{XID_LATEST} * 0")
        positions.append("  (\n      " + "\n    or\n      ".join(terms) + "\n  )")
    total = "\n+\n".join(positions)
    return _label_replace(total, "err_code", "$1", "xid", "(.+)")


def _mapping_rule(mapping: Mapping) -> str:
    key = ", ".join(mapping.key)
    value = f"max by ({key}) ({mapping.source})"
    on = "node, uuid" if mapping.mig == "copy" else "node, uuid, GPU_I_ID"
    if mapping.mig == "instance":
        per_instance = f"max by ({key}, GPU_I_ID) ({_gi_id(mapping.mig_source)})"
        value = f"{value}\nor\n{per_instance}"
    if mapping.convert:
        value = f"(\n{_indent(value, 2)}\n) {mapping.convert}"
    copied = ", ".join(mapping.extra_labels)
    return (
        "max without (node, uuid) (\n"
        f"    {SERIES}\n"
        f"  * on ({on}) group_left ({copied}) (\n"
        f"{_indent(value, 6)}\n"
        "    )\n"
        ")"
    )


def rules(
    variant: Variant | None = None, mappings: Sequence[Mapping] = MAPPINGS
) -> list[tuple[str, str]]:
    """(record, expr) of every rule in evaluation order: helpers first, because rules of one
    group run one after the other on the same evaluation time."""
    variant = variant or Variant()
    out = [
        (GPU, _gpu_rule(variant)),
        (ENTITY, _entity_rule(variant)),
        (POD, _pod_rule()),
        (SERIES, _series_rule(variant)),
        (XID_LATEST, _xid_latest_rule()),
        (XID_CODE, _xid_code_rule()),
    ]
    out += [(mapping.name, _mapping_rule(mapping)) for mapping in mappings]
    return out


def render_rule_file(variant: Variant | None = None, mappings: Sequence[Mapping] = MAPPINGS) -> str:
    """The rule file's text (deterministic: a pure function of the tables)."""
    variant = variant or Variant()
    lines = [
        "# dcgm-exporter's metric names, labels and units from gpu-node-exporter's series, so",
        "# dashboards and alerts written for dcgm-exporter keep working (docs/dcgm-migration.md).",
        "#",
        "# GENERATED by scripts/gen_dcgm_compat.py from its MAPPINGS table: do not edit; change",
        "# the table and run `python scripts/gen_dcgm_compat.py`.",
        f"# Host label: {variant.hostname_label} (the scrape config's `node`, else the host part",
        "# of `instance`). Every other target label (instance, job, cluster, ...) is kept.",
        "groups:",
        f"  - name: {GROUP}",
        "    rules:",
    ]
    for record, expr in rules(variant, mappings):
        if expr.startswith(" "):
            raise ValueError(f"{record}: a YAML block scalar cannot start indented")
        lines.append(f"      - record: {record}")
        lines.append("        expr: |")
        lines.append(_indent(expr, 10))
    text = "\n".join(lines) + "\n"
    parsed = yaml.safe_load(text)
    read_back = [(rule["record"], rule["expr"]) for rule in parsed["groups"][0]["rules"]]
    expected = [(record, expr + "\n") for record, expr in rules(variant, mappings)]
    if read_back != expected:
        raise ValueError("the rule file does not read back as written")
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _source_cell(mapping: Mapping) -> str:
    source = mapping.doc_source or f"`{mapping.source}`"
    if mapping.convert:
        source = f"{source} {mapping.convert}"
    if mapping.mig == "instance":
        source += f"; MIG instance: `{mapping.mig_source}` {mapping.convert}".rstrip()
    return _cell(source)


def doc_section(
    mappings: Sequence[Mapping] = MAPPINGS, not_mapped: Sequence[NotMapped] = NOT_MAPPED
) -> str:
    """The generated block of docs/dcgm-migration.md: what is mapped, then what is not."""
    defaults = sum(1 for m in mappings if m.default)
    lines = [
        f"{len(mappings)} metrics mapped ({defaults} of dcgm-exporter's default counters, plus "
        f"the `{DRIVER_VERSION_LABEL}` label on every series); {len(not_mapped)} not mapped.",
        "",
        "| dcgm-exporter metric | default | unit | our source | notes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for m in mappings:
        lines.append(
            f"| `{m.name}` | {'yes' if m.default else 'no'} | {_cell(m.unit)} | "
            f"{_source_cell(m)} | {_cell(m.notes)} |"
        )
    lines += [
        "",
        "Cannot be mapped:",
        "",
        "| dcgm-exporter metric | default | why |",
        "| --- | --- | --- |",
    ]
    for n in not_mapped:
        lines.append(f"| `{n.name}` | {'yes' if n.default else 'no'} | {_cell(n.reason)} |")
    return "\n".join(lines) + "\n"


def validate(
    mappings: Sequence[Mapping] = MAPPINGS, not_mapped: Sequence[NotMapped] = NOT_MAPPED
) -> list[str]:
    """Problems in the tables: names, duplicates, conversions, MIG settings, reasons."""
    problems: list[str] = []
    seen: set[str] = set()
    for name in [m.name for m in mappings] + [n.name for n in not_mapped] + list(HELPERS):
        if not _METRIC_NAME.match(name):
            problems.append(f"{name!r} is not a valid metric name")
        if name in seen:
            problems.append(f"{name} is listed twice (mapped and not mapped, or twice)")
        seen.add(name)
    for m in mappings:
        if not _CONVERT.match(m.convert):
            problems.append(f"{m.name}: convert {m.convert!r} is not '* N', '/ N' or '/ 2^N'")
        if (m.mig == "instance") != bool(m.mig_source):
            problems.append(f"{m.name}: mig_source is needed exactly when mig is 'instance'")
        if not m.unit or len(m.notes.split()) < 2:
            problems.append(f"{m.name}: say its unit and why the source fits")
        problems += [
            f"{m.name}: extra label {label!r} is not a valid label name"
            for label in m.extra_labels
            if not _LABEL_NAME.match(label)
        ]
    problems += [
        f"{n.name}: the reason it cannot be mapped is too short"
        for n in not_mapped
        if len(n.reason.split()) < 5
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gen_dcgm_compat.py", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    parser.add_argument(
        "--hostname-label",
        default="Hostname",
        help="name of the host label (dcgm-exporter 4.8.3 and later: hostname); needs --output",
    )
    parser.add_argument("--output", type=Path, help="write the rule file here instead")
    parser.add_argument("--doc", type=Path, default=DOC_FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    problems = validate()
    if problems:
        sys.stderr.write("scripts/gen_dcgm_compat.py: bad table:\n- " + "\n- ".join(problems))
        sys.stderr.write("\n")
        return 1
    if not _LABEL_NAME.match(args.hostname_label):
        parser.error(f"--hostname-label {args.hostname_label!r} is not a valid label name")
    variant = Variant(hostname_label=args.hostname_label)
    if variant != Variant() and args.output is None:
        parser.error("a variant goes to --output FILE; the committed file keeps the defaults")
    targets = {args.output or RULE_FILE: render_rule_file(variant)}
    if args.output is None:
        current_doc = args.doc.read_text()
        targets[args.doc] = replace_section(current_doc, DOC_SECTION, doc_section())
    stale = [
        path for path, text in targets.items() if not path.exists() or path.read_text() != text
    ]
    if args.check:
        for path in stale:
            sys.stderr.write(
                f"{path} is stale: run 'python scripts/gen_dcgm_compat.py' and commit it\n"
            )
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(targets[path])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
