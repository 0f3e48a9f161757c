"""Network adapters: how a device joins Wi-Fi (NetworkManager, wpa_supplicant, simulated)."""
