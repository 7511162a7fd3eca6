"""The pinned dependencies carry the security releases the project knows about (issue 20 item 14)."""

from importlib.metadata import version
from pathlib import Path

import pytest
from django.conf import settings
from packaging.version import Version

from scripts.outdated import read_pins

# Django 5.2.20: seven CVEs fixed since 5.2.19. autobahn 26.11.1: the websocket handshake
# parsing fix (daphne speaks websockets through autobahn).
SECURITY_FLOORS = {"django": "5.2.20", "autobahn": "26.11.1"}


@pytest.mark.parametrize(("package", "floor"), SECURITY_FLOORS.items())
def test_the_pins_carry_the_security_releases(package, floor):
    pins = read_pins([Path(settings.BASE_DIR) / "requirements.txt"])
    assert Version(pins[package].version) >= Version(floor)


@pytest.mark.parametrize(("package", "floor"), SECURITY_FLOORS.items())
def test_the_installed_packages_carry_the_security_releases(package, floor):
    assert Version(version(package)) >= Version(floor)
