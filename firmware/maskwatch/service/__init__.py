"""`maskwatch run`: the appliance service, its status and systemd notification. What other stages
may use is exported here; the modules are the stage's own.
"""

from maskwatch.service.service import run_service

__all__ = ["run_service"]
