"""Put pip into a virtual environment made without it (``python3 -m venv --without-pip``).

Debian's python3 ships without ``ensurepip`` unless python3-venv is installed, so on a
fresh machine ``python3 -m venv`` fails. The Makefile then makes the venv without pip
and runs this with the venv's python: it fetches pip's newest wheel from PyPI (its JSON
API, over HTTPS, checked against the SHA-256 PyPI lists) and installs pip from the wheel
itself (a wheel is a zip that Python can run).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

INDEX = "https://pypi.org/pypi/pip/json"


def main() -> int:
    with urllib.request.urlopen(INDEX, timeout=60) as response:
        release = json.load(response)
        base = response.geturl()
    wheel = next(
        f for f in release["urls"] if f["packagetype"] == "bdist_wheel" and f["yanked"] is False
    )
    # A mirror may list files relative to the page it served.
    url = urllib.parse.urljoin(base, wheel["url"])
    if not url.startswith("https://"):
        print(f"refusing to fetch pip from a non-https URL: {url}")
        return 1
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (https, checked)
        data = response.read()
    if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
        print("pip's wheel does not match the digest PyPI lists; not installing it")
        return 1
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / wheel["filename"]
        path.write_bytes(data)
        command = [sys.executable, str(path / "pip"), "install", "--quiet", str(path)]
        return subprocess.run(command, check=False).returncode  # noqa: S603


if __name__ == "__main__":
    raise SystemExit(main())
