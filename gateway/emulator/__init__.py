"""A Gradium-compatible server for offline development, the gateway's tests and benchmarks.

Its TTS spells the text in tones (`tones.py`) and its STT reads them back, so text survives a
round trip through any transcode.
"""

from gateway.emulator.app import create_emulator_app, run_emulator
from gateway.emulator.faults import FAULTS, STATS, Faults, Stats
from gateway.emulator.settings import EmulatorSettings

__all__ = ["FAULTS", "STATS", "EmulatorSettings", "Faults", "Stats", "create_emulator_app", "run_emulator"]
