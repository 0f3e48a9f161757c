"""The TPM-sealed store key can be bound to the boot state (PCR 7, secure boot).

Sealed with no policy, the key is released to anyone who can talk to the TPM: boot
another OS from USB on the same device (secure boot off, or another signing key) and
the store opens. With ``pcrs="sha256:7"`` the TPM releases it only while PCR 7 holds
the value it had at sealing: here swtpm's PCR 7 is extended, as a different secure-boot
chain would measure it, and the key stays sealed; after a "reboot" into the same chain
(swtpm restarted, PCRs reset) it unseals again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bleprov.store.keys import (
    TPM_POLICY_TOOLS,
    TPM_TOOLS,
    KeyProviderError,
    KeyUnavailable,
    TpmProvider,
)
from tests.store.test_keys import SoftwareTpm, software_tpm  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(
    shutil.which("swtpm") is None
    or shutil.which("tpm2_pcrextend") is None
    or not all(shutil.which(tool) for tool in TPM_TOOLS + TPM_POLICY_TOOLS),
    reason="needs Debian's swtpm and tpm2-tools",
)


def measure_another_boot_chain(tpm: SoftwareTpm) -> None:
    """Extend PCR 7, as firmware does for a secure-boot state other than the sealed one."""
    subprocess.run(
        ["tpm2_pcrextend", "7:sha256=" + "ab" * 32],
        env={**os.environ, "TPM2TOOLS_TCTI": tpm.tcti},
        check=True,
        capture_output=True,
    )


def test_a_key_bound_to_pcr7_is_not_released_to_another_boot_chain(
    software_tpm: SoftwareTpm,  # noqa: F811
    tmp_path: Path,
) -> None:
    directory = tmp_path / "device"
    key = TpmProvider(directory, tcti=software_tpm.tcti, pcrs="sha256:7").load_or_create()
    # Later loads need no option: the selection is in the sealed blob.
    assert TpmProvider(directory, tcti=software_tpm.tcti).load_or_create() == key

    measure_another_boot_chain(software_tpm)
    with pytest.raises(KeyUnavailable, match=r"bound to PCRs sha256:7") as refused:
        TpmProvider(directory, tcti=software_tpm.tcti).load_or_create()
    assert key.hex() not in str(refused.value)

    software_tpm.stop()
    software_tpm.start()  # same TPM state, PCRs reset: the sealed boot chain again
    assert TpmProvider(directory, tcti=software_tpm.tcti).load_or_create() == key


def test_without_the_option_the_key_is_released_whatever_booted(
    software_tpm: SoftwareTpm,  # noqa: F811
    tmp_path: Path,
) -> None:
    # What the option is for: the default seal has no policy (documented).
    directory = tmp_path / "device"
    key = TpmProvider(directory, tcti=software_tpm.tcti).load_or_create()
    measure_another_boot_chain(software_tpm)
    assert TpmProvider(directory, tcti=software_tpm.tcti).load_or_create() == key


def test_a_bad_pcr_selection_is_refused(tmp_path: Path) -> None:
    for bad in ("7", "sha256:", "sha256:24", "md5:7", "sha256:7;rm"):
        with pytest.raises(KeyProviderError, match="bad PCR selection"):
            TpmProvider(tmp_path, pcrs=bad)
