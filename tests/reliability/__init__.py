"""Reliability, durability and security: faults, memory, spool, auth, hostile input."""
