"""Storage adapters: where a device keeps what must survive a power cut."""
