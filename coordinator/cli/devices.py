"""`edgectl device ...`: register, list, show, label and remove devices.

grpc and the generated protobuf modules are imported inside the commands, never at module level:
`edgectl --help` loads this module and must stay fast.
"""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from coordinator.cli.context import admin_client
from coordinator.cli.errors import CliError
from coordinator.cli.output import OutputFormat, OutputOpt, message_to_plain, print_json

app = typer.Typer(
    help=(
        "Register devices, see their hardware and state, label and remove them.\n\n"
        "Examples:\n"
        "  $ edgectl device register cam-01 --label site=lab\n"
        "  $ edgectl device list --select site=lab\n"
        "  $ edgectl device show cam-01 -o json"
    ),
    no_args_is_help=True,
)

RefArg = Annotated[str, typer.Argument(metavar="REF", help="Device name or id.", show_default=False)]


@app.command("register")
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the new device (unique in the fleet).", show_default=False)],
    label: Annotated[
        Optional[list[str]], typer.Option("--label", "-l", help="Label key=value; repeat for more.", show_default=False)
    ] = None,
    ttl: Annotated[
        Optional[int],
        typer.Option("--ttl", min=1, help="Lifetime of the enrollment token in seconds (default: the coordinator's, 24 h).", show_default=False),
    ] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Create a device and a one-time enrollment token, and print the command to run on the device.

    Examples:
      $ edgectl device register cam-01 --label site=lab --label class=rpi4
      $ edgectl device register gw-7 --ttl 3600 -o json
    """
    from coordinator.cli.device_views import print_registration
    from coordinator.cli.labels import parse_labels
    from edgefleet.v1 import admin_pb2

    labels = parse_labels(label or [], what="--label")
    if not name.strip():
        raise CliError("the device name is empty")
    request = admin_pb2.RegisterDeviceRequest(name=name.strip(), labels=labels, token_ttl_s=ttl or 0)
    with admin_client(ctx) as admin:
        response = admin.call("RegisterDevice", request)
    if output is OutputFormat.json:
        print_json(message_to_plain(response))
    else:
        print_registration(response)


@app.command("list")
def list_devices(
    ctx: typer.Context,
    select: Annotated[
        Optional[str],
        typer.Option("--select", "-s", help="Only devices whose labels match all of k=v,k2=v2.", show_default=False),
    ] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List devices with their state, last contact and hardware.

    Examples:
      $ edgectl device list
      $ edgectl device list --select site=lab,class=rpi4
      $ edgectl device list -o json
    """
    from coordinator.cli.device_views import device_to_plain, print_device_table
    from coordinator.cli.labels import parse_selector
    from edgefleet.v1 import admin_pb2

    selector = parse_selector(select) if select is not None else ""
    with admin_client(ctx) as admin:
        response = admin.call("ListDevices", admin_pb2.ListDevicesRequest(selector=selector))
    if output is OutputFormat.json:
        print_json([device_to_plain(d) for d in response.devices])
    else:
        print_device_table(response.devices)


@app.command("show")
def show(ctx: typer.Context, ref: RefArg, output: OutputOpt = OutputFormat.table) -> None:
    """Show one device: details, hardware, hardware and model history, latest telemetry.

    Examples:
      $ edgectl device show cam-01
      $ edgectl device show 3f2a9c1e -o json
    """
    from coordinator.cli.device_views import device_to_plain, print_device_details
    from edgefleet.v1 import admin_pb2

    with admin_client(ctx) as admin:
        device = admin.call("GetDevice", admin_pb2.GetDeviceRequest(ref=ref))
    if output is OutputFormat.json:
        print_json(device_to_plain(device, detail=True))
    else:
        print_device_details(device)


@app.command("label")
def label(
    ctx: typer.Context,
    ref: RefArg,
    labels: Annotated[
        Optional[list[str]],
        typer.Argument(metavar="KEY=VALUE|KEY-...", help="key=value sets a label, key- removes it.", show_default=False),
    ] = None,
    remove: Annotated[
        Optional[list[str]], typer.Option("--remove", "-r", help="Label key to remove; repeat for more.", show_default=False)
    ] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Set or remove labels on a device.

    Examples:
      $ edgectl device label cam-01 site=lab tier=canary
      $ edgectl device label cam-01 tier-
      $ edgectl device label cam-01 --remove tier --remove site
    """
    from coordinator.cli.device_views import device_to_plain, labels_text
    from coordinator.cli.labels import parse_label_changes
    from edgefleet.v1 import admin_pb2

    to_set, to_remove = parse_label_changes(labels or [], remove or [])
    with admin_client(ctx) as admin:
        device = admin.call("LabelDevice", admin_pb2.LabelDeviceRequest(ref=ref, set=to_set, remove=to_remove))
    if output is OutputFormat.json:
        print_json(device_to_plain(device))
    else:
        sys.stdout.write(f"device {device.name} labelled: {labels_text(device.labels)}\n")


@app.command("remove")
def remove(
    ctx: typer.Context,
    ref: RefArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a device from the registry; its agent can no longer connect.

    Without --yes, edgectl asks first (and refuses when stdin is not a terminal).

    Examples:
      $ edgectl device remove cam-01
      $ edgectl device remove 3f2a9c1e --yes
    """
    from edgefleet.v1 import admin_pb2

    if not yes and not sys.stdin.isatty():
        raise CliError(f"not removing device {ref!r} without confirmation: add --yes (stdin is not a terminal)")
    with admin_client(ctx) as admin:
        if not yes:
            device = admin.call("GetDevice", admin_pb2.GetDeviceRequest(ref=ref))
            if not typer.confirm(f"Remove device {device.name} ({device.id})?", default=False):
                raise CliError("not removed")
        response = admin.call("RemoveDevice", admin_pb2.RemoveDeviceRequest(ref=ref))
    sys.stdout.write(f"device {ref} removed (id {response.id})\n")
