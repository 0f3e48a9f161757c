"""Cloud binding: the secure session carried through an MQTT broker instead of BLE.

:mod:`.wire` names the topics and codes the one-byte envelope around each session message,
:mod:`.device` connects a device out to the broker and offers sessions to the same
``SecureDeviceServer`` the BLE link feeds (:mod:`bleprov.session`), and :mod:`.host` gives
``SecureHostLink`` a :class:`~bleprov.link.MessageLink`, as BLE's ``HostLink`` is. The
broker relays ciphertext only (docs/cloud-binding.md).
"""
