"""Test doubles for the daemons bleprov reaches over D-Bus: bluetoothd and NetworkManager.

They are built on dbus-fast's own service API (``ServiceInterface`` with ``@dbus_method``,
``@dbus_property`` and ``@dbus_signal``, exported on a ``MessageBus``), so ``make test``
needs no C build: python-dbusmock needed dbus-python, which has no wheel and builds
against libdbus and GLib. Each double serves its daemon's well-known name on a private
``dbus-daemon`` (the ``system_bus`` fixture) and models what the real daemon does as far as
bleprov (and bless) use it; test-only controls sit on a separate interface,
:data:`~tests.dbus_doubles.common.TEST_IFACE`, so they never pass for the daemon's API.
"""
