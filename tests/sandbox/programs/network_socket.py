"""Hostile: opens a network connection. Expected in a sandbox (Docker, confined local): no network -> crashed."""

import socket

import unigram_trainer

KNOBS = []

with socket.create_connection(("1.1.1.1", 53), timeout=3) as conn:
    print(f"connected to {conn.getpeername()}", flush=True)
unigram_trainer.main()
