"""Accelerators: Coral Edge TPUs (USB and PCIe/M.2) and GPUs (NVIDIA, Tegra, DRM render nodes).

Edge TPU over USB shows up under {sys}/bus/usb/devices with one of two id pairs: 1a6e:089a until
the runtime has loaded its firmware, 18d1:9302 after. A PCIe/M.2 Edge TPU (and the Coral Dev
Board's) is a {dev}/apex_N node from the gasket/apex driver.

GPUs: {dev}/nvidiaN nodes (bus "pcie", or "integrated" on Tegra, which also has {dev}/nvhost-*);
a Tegra without nvidiaN nodes (L4T before JetPack 6) is one integrated GPU at {dev}/nvhost-gpu.
{dev}/dri/renderD* nodes are GPUs named from {sys}/class/drm/renderDN/device/vendor (PCI: bus
"pcie", but "integrated" for Intel) or the driver (SoC GPUs such as the Pi's v3d: "integrated"); NVIDIA render nodes already counted above are skipped,
and software-only DRM drivers are not GPUs.
"""
from __future__ import annotations

from pathlib import Path

from edgefleet.v1.hardware_pb2 import Accelerator

from agent.probe.sysfs import children, exists, read_text

EDGETPU_USB = {
    "1a6e:089a": ("Coral USB Accelerator", "firmware not loaded yet"),
    "18d1:9302": ("Coral USB Accelerator", "firmware loaded"),
}

PCI_VENDORS = {"0x8086": "Intel", "0x10de": "NVIDIA", "0x1002": "AMD", "0x13b5": "ARM", "0x5143": "Qualcomm"}

# DRM drivers with render nodes but no hardware behind them.
SOFTWARE_DRM = {"vgem", "vkms"}

# Tegra SoC generation from the device-tree `compatible` list.
TEGRA_NAMES = {
    "nvidia,tegra210": "NVIDIA Tegra X1",
    "nvidia,tegra186": "NVIDIA Tegra X2",
    "nvidia,tegra194": "NVIDIA Xavier",
    "nvidia,tegra234": "NVIDIA Orin",
}


def probe_accelerators(sys_root: Path, dev_root: Path, proc_root: Path) -> list[Accelerator]:
    return [
        *edgetpu_usb(sys_root),
        *edgetpu_pcie(dev_root),
        *nvidia_gpus(sys_root, dev_root, proc_root),
        *drm_gpus(sys_root, dev_root),
    ]


def edgetpu_usb(sys_root: Path) -> list[Accelerator]:
    found = []
    for device in children(sys_root / "bus/usb/devices", "*"):
        vendor = (read_text(device / "idVendor") or "").lower()
        product = (read_text(device / "idProduct") or "").lower()
        usb_id = f"{vendor}:{product}"
        if usb_id in EDGETPU_USB:
            name, detail = EDGETPU_USB[usb_id]
            found.append(Accelerator(kind="edgetpu", bus="usb", id=usb_id, name=name, detail=detail))
    return found


def edgetpu_pcie(dev_root: Path) -> list[Accelerator]:
    return [
        Accelerator(kind="edgetpu", bus="pcie", id=str(node), name="Coral Edge TPU (PCIe)")
        for node in children(dev_root, "apex_[0-9]*")
    ]


def nvidia_gpus(sys_root: Path, dev_root: Path, proc_root: Path) -> list[Accelerator]:
    tegra_nodes = children(dev_root, "nvhost-*")
    nodes = [n for n in children(dev_root, "nvidia[0-9]*") if n.name[len("nvidia"):].isdigit()]
    if tegra_nodes:
        name = _tegra_name(sys_root, proc_root)
        if not nodes:
            gpu_node = dev_root / "nvhost-gpu"
            node = gpu_node if exists(gpu_node) else tegra_nodes[0]
            return [Accelerator(kind="gpu", bus="integrated", id=str(node), name=name)]
        return [Accelerator(kind="gpu", bus="integrated", id=str(n), name=name) for n in nodes]
    models = _nvidia_models(proc_root)
    return [
        Accelerator(kind="gpu", bus="pcie", id=str(n), name=models.get(int(n.name[len("nvidia"):]), "NVIDIA GPU"))
        for n in nodes
    ]


def _nvidia_models(proc_root: Path) -> dict[int, str]:
    """Device minor → model from the NVIDIA driver's /proc/driver/nvidia/gpus/*/information."""
    models: dict[int, str] = {}
    for gpu in children(proc_root / "driver/nvidia/gpus", "*"):
        fields = {}
        for line in (read_text(gpu / "information") or "").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        minor = fields.get("Device Minor", "")
        if minor.isdigit() and fields.get("Model"):
            models[int(minor)] = fields["Model"]
    return models


def _tegra_name(sys_root: Path, proc_root: Path) -> str:
    for path in (sys_root / "firmware/devicetree/base/compatible", proc_root / "device-tree/compatible"):
        text = read_text(path)
        if text:
            for entry in text.split("\x00"):
                if entry in TEGRA_NAMES:
                    return TEGRA_NAMES[entry]
    return "NVIDIA Tegra GPU"


def drm_gpus(sys_root: Path, dev_root: Path) -> list[Accelerator]:
    have_nvidia = bool(children(dev_root, "nvidia[0-9]*") or children(dev_root, "nvhost-*"))
    found = []
    for node in children(dev_root / "dri", "renderD*"):
        device = sys_root / "class/drm" / node.name / "device"
        vendor = (read_text(device / "vendor") or "").lower()
        driver = _driver(device)
        if driver in SOFTWARE_DRM:
            continue
        if have_nvidia and (vendor == "0x10de" or driver in ("tegra", "nvgpu", "nvidia-drm")):
            continue  # the same GPU, already reported from its nvidia/nvhost node
        if vendor:
            name = f"{PCI_VENDORS.get(vendor, 'PCI ' + vendor)} GPU"
            # Intel GPUs on edge boxes are the CPU's own graphics, though they sit on the PCI bus.
            bus = "integrated" if vendor == "0x8086" else "pcie"
        else:
            name = f"GPU ({driver})" if driver else "GPU"
            bus = "integrated"
        found.append(Accelerator(kind="gpu", bus=bus, id=str(node), name=name, detail=f"driver {driver}" if driver else ""))
    return found


def _driver(device: Path) -> str:
    for line in (read_text(device / "uevent") or "").splitlines():
        if line.startswith("DRIVER="):
            return line[len("DRIVER="):].strip()
    try:
        return (device / "driver").resolve(strict=True).name
    except OSError:
        return ""
