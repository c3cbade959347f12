"""Alerts (R8, R9, R4, R10, R2): what the command room must act on, each acknowledged and resolved
with notes; and the rules that raise and clear them on time."""
