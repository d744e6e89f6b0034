"""The I/O-free protocol core, one concern per module (kept empty so parse-time imports stay cheap)."""
