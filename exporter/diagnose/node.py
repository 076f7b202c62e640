"""Checklist steps about the node itself: driver loaded and GPUs visible (NVML, PCI bus), the
container's /dev/nvidia*, and a CUDA runtime against the driver.

Why the PCI bus next to NVML: a GPU the driver never took (it failed to initialise) or one that
left the bus is invisible to NVML's count alone; the bus shows the hardware that is there.
"""

from __future__ import annotations

from exporter import metrics
from exporter.diagnose.base import info
from exporter.diagnose.inputs import ListReading, NvmlReading, gpu_device_files
from exporter.diagnose.options import Options
from exporter.verdict import Finding, short_bus_id
from exporter.xid.parser import normalize_pci

# -- 1. is the GPU visible to the node (driver loaded) ---------------------------------------

_DRIVER_STEPS = (
    (
        "DRIVER_NOT_LOADED",
        "Load the NVIDIA kernel module (modprobe nvidia; dmesg | grep NVRM says why it failed) "
        "or install the driver",
    ),
    (
        "LIBRARY_NOT_FOUND",
        "Install the driver on the host; in a container, run with the NVIDIA container runtime "
        "(runtimeClassName: nvidia) so libnvidia-ml.so.1 is mounted",
    ),
    (
        "LIB_RM_VERSION_MISMATCH",
        "The kernel module and the user-space library differ (driver upgraded without a "
        "reboot): drain and reboot the node",
    ),
    ("NO_PERMISSION", "Run as root, or give this container the NVIDIA devices"),
)


def driver_check(nvml: NvmlReading) -> Finding:
    """NVML initialises and counts GPUs."""
    if nvml.status == "timeout":
        return Finding(
            "nvml.driver",
            "failed",
            None,
            f"NVML: {nvml.detail}",
            "A GPU or the driver hangs: check dmesg for Xid 79, 119 or GSP timeouts; reset the "
            "GPU or reboot the node",
        )
    if nvml.status != "ok":
        step = next(
            (text for code, text in _DRIVER_STEPS if code in nvml.detail),
            "Check dmesg for NVRM errors; reinstall or reload the driver",
        )
        return Finding("nvml.driver", "failed", None, f"NVML does not work: {nvml.detail}", step)
    count = sum(value for _, value in nvml.samples.get(metrics.GPUS.name, ()))
    migs = sum(value for _, value in nvml.samples.get(metrics.MIG_DEVICES.name, ()))
    if count == 0:
        return Finding(
            "nvml.driver",
            "failed",
            None,
            "NVML initialised but sees no GPU",
            "Check that the GPUs are on the PCI bus (lspci -d 10de:) and that the driver bound "
            "them (dmesg | grep NVRM)",
        )
    driver = info(nvml.samples, "driver_version")
    cuda = info(nvml.samples, "cuda_driver_version")
    mig_text = f" and {migs:.0f} MIG devices" if migs else ""
    return Finding(
        "nvml.driver",
        "passed",
        None,
        f"driver {driver or 'unknown'} (CUDA {cuda or 'unknown'} at most), NVML sees "
        f"{count:.0f} GPU{'s' if count != 1 else ''}{mig_text}",
        "",
    )


def pci_check(pci: ListReading, nvml: NvmlReading, options: Options) -> Finding:  # noqa: PLR0911 - one return per outcome
    """NVIDIA GPUs on the PCI bus against the GPUs NVML lists."""
    check = "node.pci_bus"
    if options.simulate is not None and not options.sysfs_given:
        return Finding(
            check, "skipped", None, "--simulate: the PCI bus is not simulated (--path.sysfs)", ""
        )
    if pci.status != "ok":
        return Finding(check, "skipped", None, pci.detail, "")
    on_bus = {normalize_pci(slot) or slot: slot for slot in pci.names}
    if nvml.status != "ok":
        if on_bus:
            return Finding(
                check, "passed", None, f"the PCI bus shows {len(on_bus)} NVIDIA GPUs", ""
            )
        return Finding(
            check,
            "failed",
            None,
            "no NVIDIA GPU on the PCI bus",
            "The node has no GPU, or firmware hides it (BIOS settings, a VM without passthrough)",
        )
    listed = {
        normalize_pci(gpu.pci_bus_id) or gpu.pci_bus_id: gpu
        for gpu in nvml.directory
        if gpu.pci_bus_id
    }
    nameless = sum(1 for gpu in nvml.directory if not gpu.pci_bus_id)  # lost at enumeration
    not_in_nvml = sorted(set(on_bus) - set(listed))
    not_on_bus = sorted(set(listed) - set(on_bus))
    if not_on_bus:
        names = ", ".join(
            f"GPU {listed[key].index} ({short_bus_id(listed[key].pci_bus_id)})"
            for key in not_on_bus
        )
        return Finding(
            check,
            "failed",
            None,
            f"NVML lists {len(listed)} GPUs, the PCI bus shows {len(on_bus)}: {names} left the bus",
            "Cordon and drain the node, power-cycle it; replace the GPU if it recurs",
        )
    if len(not_in_nvml) > nameless:
        slots = ", ".join(on_bus[key] for key in not_in_nvml)
        return Finding(
            check,
            "failed",
            None,
            f"the PCI bus shows {len(on_bus)} NVIDIA GPUs, NVML {len(listed)}: the driver did "
            f"not take {slots}",
            "Check dmesg for NVRM errors about that slot (a GPU that failed to initialise or "
            "fell off the bus); power-cycle the node; replace the GPU if it recurs",
        )
    lost = f" ({nameless} of them lost: gpu.fallen_off_bus)" if nameless else ""
    return Finding(
        check, "passed", None, f"{len(on_bus)} NVIDIA GPUs on the PCI bus, all in NVML{lost}", ""
    )


# -- 5. can the container see them -----------------------------------------------------------


def devices_check(dev: ListReading, nvml: NvmlReading, options: Options) -> Finding:  # noqa: PLR0911 - one return per outcome
    """/dev/nvidia* in this container: the control device, UVM and one file per GPU."""
    check = "container.devices"
    if options.simulate is not None and not options.dev_given:
        return Finding(
            check, "skipped", None, "--simulate: no device files are simulated (--path.dev)", ""
        )
    if dev.status != "ok":
        return Finding(check, "skipped", None, dev.detail, "")
    where = options.dev_path.rstrip("/") or "/"
    runtime_step = (
        "Run the container with the NVIDIA container runtime (runtimeClassName: nvidia, or the "
        "GPU Operator's toolkit) and request a GPU"
    )
    gpus = gpu_device_files(dev.names)
    if not gpus:
        return Finding(
            check, "failed", None, f"this container sees no {where}/nvidia<N> device", runtime_step
        )
    if "nvidiactl" not in dev.names:
        return Finding(
            check, "failed", None, f"{where}/nvidiactl is missing (CUDA needs it)", runtime_step
        )
    if nvml.status == "ok":
        absent = [
            gpu
            for gpu in nvml.directory
            if gpu.minor_number is not None and f"nvidia{gpu.minor_number}" not in gpus
        ]
        if absent:
            names = ", ".join(
                f"GPU {gpu.index} ({where}/nvidia{gpu.minor_number})" for gpu in absent
            )
            return Finding(
                check,
                "warning",
                None,
                f"NVML lists {names} but the device file is absent: CUDA cannot open it",
                runtime_step,
            )
    capabilities = {part.strip() for part in (dev.capabilities or "all").split(",")}
    cuda = bool(capabilities & {"all", "compute"})
    if "nvidia-uvm" not in dev.names and not cuda:
        return Finding(
            check,
            "passed",
            None,
            f"{where}/nvidiactl and {len(gpus)} GPU devices; no nvidia-uvm, as "
            f"NVIDIA_DRIVER_CAPABILITIES={dev.capabilities} asks (no CUDA in this container)",
            "",
        )
    if "nvidia-uvm" not in dev.names:
        return Finding(
            check,
            "warning",
            None,
            f"{where}/nvidia-uvm is missing: CUDA programs fail with 'no CUDA-capable device'",
            "Load nvidia-uvm on the host (modprobe nvidia-uvm) and restart the container",
        )
    return Finding(
        check, "passed", None, f"{where}/nvidiactl, nvidia-uvm and {len(gpus)} GPU devices", ""
    )


# -- 6. is the CUDA version compatible -------------------------------------------------------


def cuda_check(nvml: NvmlReading, options: Options) -> Finding:
    """--cuda-runtime X.Y against the newest CUDA the driver supports (cuda_driver_version)."""
    check = "cuda.runtime"
    if nvml.status != "ok":
        return Finding(check, "skipped", None, "needs NVML, which does not work", "")
    driver = info(nvml.samples, "driver_version") or "unknown"
    cuda = info(nvml.samples, "cuda_driver_version")
    if options.cuda_runtime is None:
        return Finding(
            check,
            "skipped",
            None,
            f"driver {driver} supports CUDA {cuda or 'unknown'} at most; give --cuda-runtime "
            "X.Y to check a container's runtime",
            "",
        )
    runtime = ".".join(str(part) for part in options.cuda_runtime)
    try:
        supported = tuple(int(part) for part in cuda.split("."))
    except ValueError:
        return Finding(check, "skipped", None, "the driver reports no CUDA version", "")
    if options.cuda_runtime > supported:
        return Finding(
            check,
            "failed",
            None,
            f"CUDA runtime {runtime} is newer than driver {driver} supports (CUDA {cuda} at "
            "most): CUDA fails with 'driver version is insufficient for CUDA runtime version'",
            f"Upgrade the node's driver to one for CUDA {runtime} or newer, or use an image "
            f"built for CUDA {cuda} or older (data-center GPUs: the cuda-compat package)",
        )
    return Finding(
        check,
        "passed",
        None,
        f"CUDA runtime {runtime} is supported: driver {driver} supports CUDA {cuda} at most",
        "",
    )
