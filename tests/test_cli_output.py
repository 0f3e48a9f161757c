"""What the host commands print, as a person (or a script) reads it (issue 13).

One device served with ``--name Kitchen`` on a radio hub, each host step a ``bleprov``
process: the scan hears its name and shows its discriminator as the label prints it;
piped (no terminal, no COLUMNS) a table keeps every value whole; without -v nothing is
logged, with -vv the protocol events are, and never a secret. In-process, the session
keys of a provisioning logged at DEBUG appear nowhere in the log either.

The module's process tests run in order: the device is bound by the -vv provision.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bleprov.core.advertising import format_discriminator
from bleprov.core.onboarding import OnboardingPayload, parse_qr
from bleprov.core.wifi import ScanResult, WifiCredentials
from bleprov.service.provisioning import PeerPlan, provision
from tests.processes import HOME_PASSWORD, SECRETS, bleprov, child_env, served_device
from tests.rig import HOME, PASSWORD
from tests.worlds import World

#: A log record as configure_logging formats it: time, logger, level, message.
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<name>\S+) (?P<level>[A-Z]+) ")


@dataclass
class Served:
    work: Path
    host_radio: str
    label_txt: Path
    payload: OnboardingPayload
    trust: list[str]

    @property
    def laptop(self) -> list[str]:
        return ["--host-dir", str(self.work / "laptop")]

    def secrets(self) -> list[str]:
        """Everything secret a host step handles: passphrases, the Wi-Fi password, the
        label's key in every printed form."""
        label = self.label_txt.read_text()
        printed = [line.split(":", 1)[1].strip() for line in label.splitlines() if ":" in line]
        return [
            *SECRETS.values(),
            HOME_PASSWORD,
            self.payload.label_secret.hex(),
            self.payload.label_secret.hex().upper(),
            *(text for text in printed if len(text) > 8),
            *re.findall(r"BP:[0-9A-Z.\-]+", label),
        ]


def unpiped_env(**extra: str) -> dict[str, str]:
    """A child's environment with no COLUMNS or LINES: stdout is a pipe, as in a script."""
    return {k: v for k, v in child_env(**extra).items() if k not in ("COLUMNS", "LINES")}


def log_lines(text: str) -> list[re.Match[str]]:
    return [m for line in text.splitlines() if (m := _LOG_LINE.match(line))]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("cli-output")
    with served_device(work, modes="qr,code", serve=["--name", "Kitchen"]) as device:
        label = device.label_txt.read_text()
        qr = re.search(r"BP:[0-9A-Z.\-]+", label)
        assert qr is not None
        yield Served(work, device.host_radio, device.label_txt, parse_qr(qr.group(0)), device.trust)


pytestmark = pytest.mark.multiprocess


def test_a_piped_scan_shows_the_name_and_the_label_s_discriminator_whole(served: Served) -> None:
    found = bleprov("scan", "--radio", served.host_radio, "--timeout", "3", env=unpiped_env())
    assert found.returncode == 0, found.stdout + found.stderr
    assert found.stderr == ""  # without -v nothing is logged
    disc = format_discriminator(served.payload.discriminator)
    rows = [line for line in found.stdout.splitlines() if "Kitchen" in line]
    assert len(rows) == 1, found.stdout  # the name was empty; squeezed, a row wrapped
    assert disc in rows[0] and "virgin" in rows[0] and "dBm" in rows[0], found.stdout
    assert "…" not in found.stdout
    [seen] = json.loads(
        bleprov("scan", "--radio", served.host_radio, "--timeout", "3", "--json").stdout
    )
    assert seen["name"] == "Kitchen"
    assert seen["discriminator"] == served.payload.discriminator  # JSON: a number


def test_without_v_a_provision_logs_nothing(served: Served) -> None:
    """A wrong Wi-Fi password: exit 5, nothing changed on the device, one error line."""
    args = ["provision", "--radio", served.host_radio, "--qr-file", str(served.label_txt)]
    args += [*served.trust, "--wifi-ssid", "Home", "--peer", *served.laptop]
    wrong = bleprov(*args, env=child_env(BLEPROV_WIFI_PASSWORD="not the password"))
    assert wrong.returncode == 5, wrong.stdout + wrong.stderr
    assert log_lines(wrong.stdout + wrong.stderr) == [], wrong.stderr
    assert [line for line in wrong.stderr.splitlines() if line.strip()] == [
        line for line in wrong.stderr.splitlines() if line.startswith("error:")
    ], wrong.stderr
    disc = format_discriminator(served.payload.discriminator)
    assert f"discriminator {disc}," in wrong.stdout  # "found ..., discriminator 0x..."


def test_vv_logs_protocol_events_and_no_secret(served: Served) -> None:
    args = ["-vv", "provision", "--radio", served.host_radio, "--qr-file", str(served.label_txt)]
    args += [*served.trust, "--wifi-ssid", "Home", "--peer", *served.laptop]
    done = bleprov(*args, env=child_env(BLEPROV_WIFI_PASSWORD=HOME_PASSWORD))
    assert done.returncode == 0, done.stdout + done.stderr
    logged = done.stderr
    records = log_lines(logged)
    levels = {m["level"] for m in records}
    assert {"INFO", "DEBUG"} <= levels, logged
    for event in (
        "connecting to ",
        "authenticating in qr mode",
        "session out: HELLO (qr mode), ",
        "session in: HANDSHAKE, ",
        "session out: SECURE, ",
        "frame out: OPEN, ",
        "frame in: DATA, ",
        "enrolment request 1 wifi/scan: ",
        "enrolment response 1: ok, ",
        "enrolment request 2 wifi/set: ",
        "secure session established with device ",
        "sending Wi-Fi credentials (attempt 1)",
        "committing on the device",
    ):
        assert event in logged, f"{event!r} not logged:\n{logged}"
    # Libraries stay at WARNING below -vvv: no bumble or bleak debug in bulk.
    assert not [m for m in records if not m["name"].startswith("bleprov")], logged
    for secret in served.secrets():
        assert secret not in done.stdout + done.stderr, "a secret was printed or logged"
    assert "Home" not in logged  # the network's name is not logged either


def test_a_piped_peer_list_shows_the_whole_fingerprint(served: Served) -> None:
    [pin] = json.loads(bleprov("peer", "list", *served.laptop, "--json").stdout)
    listed = bleprov("peer", "list", *served.laptop, env=unpiped_env())
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = [line for line in listed.stdout.splitlines() if pin["name"] in line]
    assert len(rows) == 1 and pin["fingerprint"] in rows[0], listed.stdout


class _Home:
    """Picks the simulated home network, with its password."""

    async def choose(self, results: list[ScanResult]) -> WifiCredentials | None:
        return HOME

    async def retry(self, status: object, tried: WifiCredentials) -> WifiCredentials | None:
        return None


async def test_a_provisioning_logged_at_debug_holds_no_key(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Session keys, the label secret and the Wi-Fi password appear in no log record,
    in any spelling (hex, bytes repr, base64)."""
    caplog.set_level(logging.DEBUG, logger="bleprov")
    device = await world.new_device()
    session, _ = await world.session(device)
    assert session.machine is not None
    keys = session.machine._keys  # the test reads what the log must not show
    assert keys is not None
    label = parse_qr(device.label_qr)
    try:
        await provision(session, wifi=_Home(), peer=PeerPlan(world.host("laptop")))
    finally:
        await session.close()
        await device.service.drain()
    text = caplog.text
    assert "session out: SECURE" in text and "enrolment request" in text
    secrets = [keys.host_to_device, keys.device_to_host, label.label_secret]
    for secret in secrets:
        for spelling in (secret.hex(), repr(secret)[2:-1], base64.b64encode(secret).decode()):
            assert spelling not in text
    assert PASSWORD not in text
