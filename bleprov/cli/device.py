"""``bleprov device init`` and ``bleprov device serve``: the commands run on the device.

``init`` moves the factory's sealed record into the device's encrypted store (once);
``serve`` is the daemon (bleprov.service.device_daemon) with its options parsed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from bleprov.cli import EXIT_ERROR, device_app, err_console, run
from bleprov.core.errors import BleprovError

if TYPE_CHECKING:
    import asyncio

    from bleprov.broker.client import BrokerConfig
    from bleprov.network.base import NetworkBackend
    from bleprov.radio.spec import RadioSpec
    from bleprov.service.device_ui import DeviceUiHooks
    from bleprov.store.device_store import DeviceStore


#: The systemd credential (LoadCredential=) that holds the sealed record's passphrase.
PASSPHRASE_CREDENTIAL = "device-passphrase"  # noqa: S105  (a file name, not a secret)


class DeviceInitError(BleprovError):
    """``device init`` cannot import the record (store present, no key provider)."""


class StoreExists(DeviceInitError):
    """``device init`` found a store already: it never overwrites one."""


def device_passphrase() -> bytes:
    """BLEPROV_DEVICE_PASSPHRASE, else systemd's credential ``device-passphrase``
    (``$CREDENTIALS_DIRECTORY``, a private in-memory file), else a no-echo prompt."""
    from bleprov.cli import service_secret

    return service_secret(
        "BLEPROV_DEVICE_PASSPHRASE", PASSPHRASE_CREDENTIAL, "Device passphrase",
        error=DeviceInitError,
    )  # fmt: skip


def _emit(line: str) -> None:
    """Event lines on stdout, whole and at once (tests and the journal read them)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@device_app.command("init")
def device_init(
    store: Annotated[Path, typer.Option(help="The device's store directory (created).")],
    source: Annotated[
        Path, typer.Option("--from", help="The factory's device directory, devices/<ID>.")
    ],
    key_provider: Annotated[
        str, typer.Option(help="Where the store's key lives: file, keyring or tpm.")
    ] = "file",
    exist_ok: Annotated[
        bool,
        typer.Option(
            "--exist-ok", help="A store already there is left alone (exit 0): for ExecStartPre."
        ),
    ] = False,
    tpm_pcrs: Annotated[
        str | None,
        typer.Option(
            help="With --key-provider tpm: seal the key to these PCRs' current values, e.g. "
            "sha256:7 (secure-boot state); the store then opens only under the same boot "
            "chain (see docs/raspberry-pi.md before a firmware update)."
        ),
    ] = None,
) -> None:
    """Import the factory's sealed device record into a new encrypted device store.

    Passphrase of the sealed record: BLEPROV_DEVICE_PASSPHRASE, systemd's credential
    device-passphrase, or typed without echo; never an argument.
    """
    from bleprov.core.advertising import format_discriminator
    from bleprov.store.device_store import STORE_FILE_NAME, DeviceStore
    from bleprov.store.factory_files import load_device
    from bleprov.store.keys import PROVIDER_NAMES, make_key_provider

    if key_provider not in PROVIDER_NAMES:
        err_console.print(
            f"[bold red]error:[/] unknown key provider {key_provider!r}: use file, keyring or tpm"
        )
        raise typer.Exit(2)
    if tpm_pcrs is not None and key_provider != "tpm":
        raise typer.BadParameter("--tpm-pcrs needs --key-provider tpm", param_hint="--tpm-pcrs")
    if exist_ok and (store / STORE_FILE_NAME).exists():
        _emit(f"{store} already holds a device store: left as it is")
        return
    try:
        if (store / STORE_FILE_NAME).exists():
            raise StoreExists(
                f"{store} already holds a device store: refusing to overwrite it (to import "
                "another record, move the directory away first)"
            )
        passphrase = device_passphrase()
        device = load_device(source, passphrase)
        provider = make_key_provider(key_provider, directory=store, tpm_pcrs=tpm_pcrs)
        if not provider.available():
            raise DeviceInitError(
                f"the {key_provider} key provider is not available here: choose another "
                "with --key-provider"
            )
        DeviceStore(store, provider).put_provisioning(device)
    except BleprovError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None
    _emit(
        f"device {device.identity.device_id} imported into {store} "
        f"(key provider {key_provider}, discriminator {format_discriminator(device.discriminator)})"
    )


@device_app.command("serve")
def device_serve(
    store: Annotated[Path, typer.Option(help="The device's store directory.")],
    radio: Annotated[
        str, typer.Option(help="bluez, bumble:<transport>, or virtual[:PORT] (a radio hub).")
    ],
    network: Annotated[
        str,
        typer.Option(help="simulated:FILE, networkmanager[:IFACE] or wpa-supplicant[:IFACE]."),
    ],
    ui: Annotated[str, typer.Option(help="console or gpio.")] = "console",
    gpio_button: Annotated[
        int | None, typer.Option(help="GPIO (BCM) of the button; held long = reset.")
    ] = None,
    gpio_reset: Annotated[
        int | None, typer.Option(help="GPIO (BCM) of a separate reset button.")
    ] = None,
    gpio_led: Annotated[int | None, typer.Option(help="GPIO (BCM) of the status LED.")] = None,
    device_confirms: Annotated[
        bool,
        typer.Option(
            "--device-confirms",
            help="The device has a display and a button: offer compare mode, the button "
            "(b, SIGUSR1, GPIO) accepting the number shown. Without it compare is not offered.",
        ),
    ] = False,
    tls: Annotated[
        str | None,
        typer.Option(help="HOST:PORT for validated connections once enrolled or bound."),
    ] = None,
    hub: Annotated[
        str | None,
        typer.Option(help="The zone hub's HOST:PORT (bleprov zone serve), for CRLs and renewal."),
    ] = None,
    crl_refresh: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Seconds between CRL fetches from the hub: how long a revocation may take "
            "to reach this device.",
        ),
    ] = 300.0,
    name: Annotated[str, typer.Option(help="Local name in the scan response.")] = "bleprov",
    key_provider: Annotated[
        str | None,
        typer.Option(help="The store key's provider (default: whichever holds the key)."),
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(
            help="Also serve enrolment through this MQTT broker (cloud binding): "
            "mqtts://host:port logs in with the factory certificate; mqtt:// only on a "
            "trusted local network."
        ),
    ] = None,
    broker_ca: Annotated[
        Path | None, typer.Option(help="The broker's CA certificate (PEM), for mqtts://.")
    ] = None,
) -> None:
    """Run the device: advertise, serve enrolment, then validated connections.

    Prints one `ready: ...` line once advertising, and tells systemd READY=1
    (Type=notify; WATCHDOG=1 pings when WatchdogSec= is set); SIGTERM or SIGINT stop it
    cleanly (an enrolment in progress is rolled back).
    """
    from bleprov.service.device_daemon import parse_endpoint, parse_network, parse_radio

    if ui not in ("console", "gpio"):
        err_console.print(f"[bold red]error:[/] unknown UI {ui!r}: use console or gpio")
        raise typer.Exit(2)
    try:
        spec = parse_radio(radio)
        parse_network(network)
        tls_endpoint = parse_endpoint(tls) if tls else None
        hub_endpoint = parse_endpoint(hub) if hub else None
    except BleprovError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    options = ServeOptions(
        store=store,
        radio=radio,
        network=network,
        ui=ui,
        gpio=(gpio_button, gpio_reset, gpio_led),
        device_confirms=device_confirms,
        tls=tls_endpoint,
        hub=hub_endpoint,
        crl_refresh=crl_refresh,
        name=name,
        key_provider=key_provider,
        broker=broker,
        broker_ca=broker_ca,
    )
    run(serve(options, spec))


@dataclass(frozen=True)
class ServeOptions:
    """``device serve``'s options, parsed (one object, so a new option stays local)."""

    store: Path
    radio: str
    network: str
    ui: str
    gpio: tuple[int | None, int | None, int | None]
    device_confirms: bool
    tls: tuple[str, int] | None
    hub: tuple[str, int] | None
    name: str
    key_provider: str | None
    broker: str | None = None
    broker_ca: Path | None = None
    crl_refresh: float = 300.0


def _broker_config(options: ServeOptions, store: DeviceStore) -> BrokerConfig | None:
    """The broker to serve through, if any; mqtts logs in with the factory certificate."""
    from bleprov.broker.client import BrokerConfig
    from bleprov.service.cloud import device_broker_tls

    if options.broker is None:
        return None
    if not options.broker.startswith("mqtts:"):
        return BrokerConfig.from_url(options.broker)
    provisioning = store.provisioning()
    if provisioning is None:
        raise DeviceInitError("the store holds no factory identity: run `bleprov device init`")
    ca_pem = None
    if options.broker_ca is not None:
        try:
            ca_pem = options.broker_ca.read_bytes()
        except OSError as exc:
            raise DeviceInitError(
                f"cannot read the broker CA {options.broker_ca}: {exc.strerror}"
            ) from None
    tls = device_broker_tls(provisioning.identity, broker_ca_pem=ca_pem)
    return BrokerConfig.from_url(options.broker, tls=tls)


async def serve(options: ServeOptions, spec: RadioSpec) -> None:
    import asyncio
    import signal

    from bleprov.core.wifi import network_tag
    from bleprov.service.device_daemon import LoggedNetwork, open_network
    from bleprov.service.device_ui import ConsoleUi, GpioUi
    from bleprov.store.device_store import STORE_FILE_NAME, DeviceStore

    if not (options.store / STORE_FILE_NAME).exists():
        raise DeviceInitError(
            f"no device store in {options.store}: run `bleprov device init` first"
        )
    preference = [options.key_provider] if options.key_provider else ["file", "tpm", "keyring"]
    store = DeviceStore.open(options.store, preference)
    interface: DeviceUiHooks
    if options.ui == "gpio":
        button, reset, led = options.gpio
        interface = GpioUi(button_pin=button, reset_pin=reset, led_pin=led)
    else:
        interface = ConsoleUi(stdin=sys.stdin)
    # The journal names networks by a keyed tag, never by SSID (L4).
    tag_key = store.log_tag_key()
    backend = LoggedNetwork(
        open_network(options.network), _emit, tag=lambda ssid: network_tag(tag_key, ssid)
    )

    stop = asyncio.Event()
    main = asyncio.current_task()

    def on_signal() -> None:
        """SIGTERM or SIGINT: stop cleanly; a second one while closing: stop at once."""
        if stop.is_set() and main is not None:
            main.cancel()
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    from bleprov.service.systemd import watchdog

    try:
        async with watchdog():  # systemd's WatchdogSec=: pinged from this loop
            await _serve(options, spec, store, interface, backend, stop)
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
        raise KeyboardInterrupt from None  # the second signal: exit 130, no traceback


async def _serve(
    options: ServeOptions,
    spec: RadioSpec,
    store: DeviceStore,
    interface: DeviceUiHooks,
    backend: NetworkBackend,
    stop: asyncio.Event,
) -> None:
    """The daemon on its radio until ``stop`` is set or the radio goes away."""
    import contextlib
    from datetime import timedelta

    from bleprov import DeviceDaemon, DeviceRuntime
    from bleprov.radio.spec import device_address, open_watched_peripheral
    from bleprov.service.device_daemon import DaemonService, ValidatedConnections
    from bleprov.service.systemd import notify

    provisioning = store.provisioning()
    address = None if provisioning is None else device_address(provisioning.identity.device_id)
    async with contextlib.AsyncExitStack() as stack:
        radio = await stack.enter_async_context(
            open_watched_peripheral(spec, name=options.name, address=address)
        )
        peripheral = radio.peripheral
        runtime = DeviceRuntime(
            store,
            peripheral,
            backend,
            ui=interface,
            device_confirms=options.device_confirms,
            local_name=options.name,
            broker=_broker_config(options, store),
        )
        services: list[DaemonService] = []
        if options.tls is not None:
            services.append(
                ValidatedConnections(
                    runtime,
                    options.tls,
                    hub=options.hub,
                    emit=_emit,
                    crl_refresh=timedelta(seconds=options.crl_refresh),
                )
            )
        daemon = DeviceDaemon(
            runtime,
            interface,
            radio_name=options.radio,
            emit=_emit,
            services=services,
            notify=notify,
        )
        await daemon.run(stop, radio.lost)
