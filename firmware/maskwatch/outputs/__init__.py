"""Alarm destinations (TCP, webhook, MQTT, serial, GPIO), one module per kind, built from the
config by the factory. What other stages may use is exported here; the modules are the stage's
own.
"""

from maskwatch.outputs.factory import build_outputs

__all__ = ["build_outputs"]
