"""When and where detection may look: operation schedule, IR / night mode, privacy zones. What
other stages may use is exported here; the modules are the stage's own.
"""

from maskwatch.conditions.ir_mode import IrDetector
from maskwatch.conditions.privacy import PrivacyMask
from maskwatch.conditions.schedule import Schedule, device_zone

__all__ = ["IrDetector", "PrivacyMask", "Schedule", "device_zone"]
