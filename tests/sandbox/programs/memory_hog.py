"""Hostile: allocates and touches memory until stopped (at most HOG_MEGABYTES). Expected: oom."""

import os
import time

KNOBS = []

chunks = []
for _ in range(int(os.environ.get("HOG_MEGABYTES", "3072")) // 32):
    chunks.append(b"\x01" * (32 * 1024 * 1024))  # written, so the pages are really resident
print(f"held {32 * len(chunks)} MB without being stopped", flush=True)
time.sleep(30)
