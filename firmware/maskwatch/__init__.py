"""maskwatch: edge firmware that finds people not wearing a face mask and raises alarms."""

__version__ = "0.1.0"
