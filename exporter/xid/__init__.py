"""Xid errors: NVIDIA's catalog, the kernel log parser and the per-GPU Xid state.

Nothing in this package does I/O beyond reading its own package data: the kernel log follower
(exporter/sources/kmsg.py), the NVML event waiter (exporter/sources/nvml/events.py) and the
udev watcher (exporter/sources/udev.py) feed `XidState`, which publishes the Xid families.
"""
