"""The audit log (R17): who did what to which object, when, from where, and how it ended; hash-chained."""
