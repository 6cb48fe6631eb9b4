"""The config file as the settings page changes it (F28).

Every save starts from the file as it is on disk now, so a change made by hand since the page
was opened is kept, and goes through ``tomlkit`` so comments, blank lines and key order stay.
The result is validated exactly as ``maskwatch check-config`` validates a file; only a valid
result is written, atomically (temporary file, fsync, rename, fsync of the folder) with the
previous version kept beside it as ``<name>.bak``. A failed save changes nothing.

Secrets (a webhook's HMAC key, the MQTT password, the stream's password) are write-only:
:func:`without_secrets` blanks them for anything shown to a browser, and a save that leaves one
blank keeps the value the file holds for that destination (or section).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from maskwatch.config import Config, ConfigError, parse_config

log = logging.getLogger(__name__)

# (section, list of destinations, key, what identifies a destination) of every value never
# sent back to a browser.
SECRETS = (
    ("outputs", "webhook", "secret", ("url",)),
    ("outputs", "mqtt", "password", ("host", "port", "username")),
)
# (section, key) of every secret that is one value of a section rather than of a destination.
SECTION_SECRETS = (("stream", "password"),)
MAX_FILE_BYTES = 64 * 1024


class ConfigStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.backup = self.path.with_name(self.path.name + ".bak")

    def read(self) -> tomlkit.TOMLDocument:
        try:
            return tomlkit.parse(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, TOMLKitError) as exc:
            raise ConfigError(str(self.path), [f"cannot read the config file: {exc}"]) from None

    def settings(self) -> dict[str, Any]:
        """The file's own settings (not the defaults it leaves out), secrets blanked."""
        return without_secrets(self.read().unwrap())

    def effective(self) -> dict[str, Any]:
        """Every setting in force (the file validated, defaults included), secrets blanked."""
        data = self.read().unwrap()
        return without_secrets(parse_config(data, str(self.path)).model_dump(mode="json"))

    def backup_text(self) -> str:
        """The file for a backup download: as it is, comments and all, secrets blank (a
        restore on this device keeps the secrets it has)."""
        document = self.read()
        for section, kind, key, _ in SECRETS:
            for destination in document.get(section, {}).get(kind, []):
                if key in destination:
                    destination[key] = ""
        for section, key in SECTION_SECRETS:
            if key in document.get(section, {}):
                document[section][key] = ""
        return tomlkit.dumps(document)

    def update(self, section: str, values: Mapping[str, Any]) -> Config:
        """Set ``values`` in ``[section]`` (a list of tables, such as ``outputs.tcp``, is
        given whole) and save. Raises ConfigError naming each problem; the file is then left
        as it was."""
        document = self.read()
        table = document.setdefault(section, tomlkit.table())
        old = document.unwrap().get(section, {})
        for key, value in values.items():
            table[key] = value
        keep_secrets(section, old, table)
        return self._save(document)

    def restore(self, text: str) -> Config:
        """Replace the whole file with an uploaded one (a backup from the page), keeping the
        secrets the upload leaves blank."""
        if len(text.encode("utf-8")) > MAX_FILE_BYTES:
            raise ConfigError("upload", [f"a config file is at most {MAX_FILE_BYTES // 1024} KB"])
        try:
            document = tomlkit.parse(text)
        except TOMLKitError as exc:
            raise ConfigError("upload", [f"not valid TOML: {exc}"]) from None
        old = self.read().unwrap()
        if "outputs" in document:
            keep_secrets("outputs", old.get("outputs", {}), document["outputs"])
        for section, key in SECTION_SECRETS:
            if section in document:
                keep_secrets(section, old.get(section, {}), document[section])
        return self._save(document)

    def _save(self, document: tomlkit.TOMLDocument) -> Config:
        data = document.unwrap()
        if not data:
            raise ConfigError(str(self.path), ["the config would hold no settings"])
        config = parse_config(data, str(self.path))
        text = tomlkit.dumps(document)
        folder = self.path.parent
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=folder)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            if self.path.exists():
                os.chmod(temporary, self.path.stat().st_mode & 0o777)
                os.replace(self.path, self.backup)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        log.info("config saved to %s (previous version: %s)", self.path, self.backup)
        return config


def without_secrets(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a plain config dict) with every secret blank and ``<key>_set`` saying
    whether one is set."""
    for section, kind, key, _ in SECRETS:
        for destination in data.get(section, {}).get(kind, []):
            destination[f"{key}_set"] = bool(destination.get(key))
            destination[key] = ""
    for section, key in SECTION_SECRETS:
        if section in data:
            data[section][f"{key}_set"] = bool(data[section].get(key))
            data[section][key] = ""
    return data


def keep_secrets(section: str, old: Mapping[str, Any], new: Any) -> None:
    """Where ``new`` (a tomlkit table of ``section``) leaves a secret blank or out, put back
    the one the same destination had (same url, or same broker and user; the section's own
    for a secret of a section), and drop the
    ``<key>_set`` flags :func:`without_secrets` added."""
    for wanted, key in SECTION_SECRETS:
        if wanted == section:
            new.pop(f"{key}_set", None)
            if not new.get(key) and old.get(key):
                new[key] = old[key]
    for wanted, kind, key, identity in SECRETS:
        if wanted != section or kind not in new:
            continue
        known = {
            tuple(d.get(k) for k in identity): d[key] for d in old.get(kind, []) if d.get(key)
        }
        for destination in new[kind]:
            destination.pop(f"{key}_set", None)
            if not destination.get(key):
                secret = known.get(tuple(destination.get(k) for k in identity))
                if secret:
                    destination[key] = secret
