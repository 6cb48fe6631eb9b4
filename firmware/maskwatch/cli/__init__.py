"""The `maskwatch` command line, one module per command. What other stages may use is exported
here; the modules are the stage's own.
"""

from maskwatch.cli.main import main

__all__ = ["main"]
