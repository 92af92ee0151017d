"""Durable background work: a job table, leased by workers on every node, retried with
back-off."""
