"""bleprov: bind a virgin IoT device to its owner over Bluetooth LE."""

__version__ = "0.1.0"
