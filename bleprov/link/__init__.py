"""Message links: what the session layer drives, and what every transport provides.

A link carries whole session messages (bytes) between one host and one device; it knows
nothing of what they mean. :mod:`.protocols` says what a link is, on each side:
:class:`MessageLink` (a host's link to one device), :class:`LinkSession` (one host's
connection as a device's link sees it) and :class:`LinkApplication` (what a device's link
hands its sessions to). :mod:`.inbox` is the receive queue every host-side link shares.

BLE (:mod:`bleprov.radio`) and the broker (:mod:`bleprov.broker`) implement these; the
session layer (:mod:`bleprov.session`) runs the secure session over any of them. A new
transport (a browser over WebSocket, say) implements the same protocols and touches
nothing else below the service layer.
"""

from bleprov.link.inbox import MessageInbox
from bleprov.link.protocols import InfoSource, LinkApplication, LinkSession, MessageLink

__all__ = ["InfoSource", "LinkApplication", "LinkSession", "MessageInbox", "MessageLink"]
