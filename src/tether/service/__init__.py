"""The use cases of tether, written against the ports in :mod:`tether.service.ports`."""
