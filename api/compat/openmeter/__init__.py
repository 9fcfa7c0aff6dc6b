"""OpenMeter-compatible API at /compat/openmeter."""
