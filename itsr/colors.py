"""Colours shared by the per-run figures and the report's figures, so that normal and anomalous
samples look the same in both. Light on purpose: the report draws without importing torch."""

from __future__ import annotations

NORMAL_COLOR, ANOMALY_COLOR = "tab:blue", "tab:orange"
