"""Ownership as people meet it, in separate processes over the loopback virtual radio.

A device daemon (``bleprov device serve --tls``) is bound by its owner's laptop with the
label; a stranger holding the same label is turned away; the owner opens a window
(``bleprov peer open-window``) and a second person's laptop joins as an admin with the
one-time code (``bleprov peer bind --window-code``); the used code opens nothing again;
then the owner hands the device over to a third laptop and can no longer open windows.
Codes travel in the environment, never on a command line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from tests.processes import ServedDevice, bleprov, child_env, read_until, served_device

pytestmark = pytest.mark.multiprocess


@pytest.fixture(scope="module")
def owned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedDevice]:
    with served_device(tmp_path_factory.mktemp("ownership"), serve=["--tls", "127.0.0.1:0"]) as it:
        yield it


def _laptop(owned: ServedDevice, name: str) -> list[str]:
    return ["--host-dir", str(owned.work / name)]


def test_an_owner_adds_an_admin_then_hands_over_and_a_label_holder_cannot(
    owned: ServedDevice,
) -> None:
    bind = ["peer", "bind", "--radio", owned.host_radio, *owned.trust]
    first = bleprov(*bind, "--qr-file", str(owned.label_txt), *_laptop(owned, "owner"))
    assert first.returncode == 0, first.stdout + first.stderr
    serving = read_until(owned.daemon, "tls: serving pinned peers on ", 30)[-1]
    tls = serving.rsplit(" ", 1)[-1]

    stranger = bleprov(*bind, "--qr-file", str(owned.label_txt), *_laptop(owned, "stranger"))
    assert stranger.returncode == 4, stranger.stdout + stranger.stderr
    assert "owner" in stranger.stderr and "Traceback" not in stranger.stderr

    opened = bleprov(
        "peer", "open-window", owned.device_id, "--address", tls, "--purpose", "admin",
        *_laptop(owned, "owner"),
    )  # fmt: skip
    assert opened.returncode == 0, opened.stdout + opened.stderr
    match = re.search(r"code: (\d{4}-\d{4}-\d{4})", opened.stdout)
    assert match is not None, opened.stdout
    code = match.group(1)
    [seen] = json.loads(bleprov("scan", "--radio", owned.host_radio, "--json").stdout)
    assert seen["modes"] == ["code"] and "window_open" in seen["flags"]
    # An open window is no way in for the label.
    label_again = bleprov(*bind, "--qr-file", str(owned.label_txt), *_laptop(owned, "stranger"))
    assert label_again.returncode == 4, label_again.stdout + label_again.stderr
    assert "has an owner" in label_again.stderr

    friend = bleprov(
        *bind, "--window-code", *_laptop(owned, "friend"), env=child_env(BLEPROV_WINDOW_CODE=code)
    )
    assert friend.returncode == 0, friend.stdout + friend.stderr
    assert code not in friend.stdout + friend.stderr
    pins = json.loads(bleprov("peer", "list", *_laptop(owned, "friend"), "--json").stdout)
    assert [p["name"] for p in pins] == [owned.device_id]

    again = bleprov(
        *bind, "--window-code", "--timeout", "3", *_laptop(owned, "late"),
        env=child_env(BLEPROV_WINDOW_CODE=code),
    )  # fmt: skip
    assert again.returncode in (3, 4), again.stdout + again.stderr  # no window to be found

    # The owner hands the device over: the buyer becomes its owner, the owner and the
    # admin are forgotten, and the old owner can no longer open windows.
    handover = bleprov(
        "peer", "open-window", owned.device_id, "--address", tls, "--purpose", "handover",
        *_laptop(owned, "owner"),
    )  # fmt: skip
    assert handover.returncode == 0, handover.stdout + handover.stderr
    match = re.search(r"code: (\d{4}-\d{4}-\d{4})", handover.stdout)
    assert match is not None, handover.stdout
    buyer = bleprov(
        *bind, "--window-code", *_laptop(owned, "buyer"),
        env=child_env(BLEPROV_WINDOW_CODE=match.group(1)),
    )  # fmt: skip
    assert buyer.returncode == 0, buyer.stdout + buyer.stderr
    former = bleprov(
        "peer", "open-window", owned.device_id, "--address", tls, *_laptop(owned, "owner")
    )
    assert former.returncode == 1, former.stdout + former.stderr
    assert "Traceback" not in former.stderr
    assert "handed over or reset" in former.stderr
    mine = bleprov(
        "peer", "open-window", owned.device_id, "--address", tls, *_laptop(owned, "buyer")
    )
    assert mine.returncode == 0, mine.stdout + mine.stderr
