"""IIS: the site's `<site>` XML, and beside it the PowerShell script that applies it on the
Windows host (imports the PKCS#12 output, binds it in HTTP.sys, loads the site)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from provision.model.playbook import Site
from provision.servers.base import CertificateFiles, Filter, WebServer
from provision.transport.base import OsFamily

# IIS numbers its own "Default Web Site" 1; every other site gets a stable hash of its name.
IIS_DEFAULT_SITE = "Default Web Site"
IIS_DEFAULT_POOL = "DefaultAppPool"
# PowerShell ends a single-quoted string at any of these, so each is doubled like '.
_POWERSHELL_QUOTES = "'\u2018\u2019\u201a\u201b"


def powershell_quote(value: Any) -> str:
    """A single-quoted PowerShell string: nothing inside is expanded."""
    text = str(value)
    for quote in _POWERSHELL_QUOTES:
        text = text.replace(quote, quote * 2)
    return "'" + text + "'"


def iis_site_id(name: str) -> int:
    """IIS's id for the site: 1 for the Default Web Site, else a stable hash of the name."""
    if name.lower() == IIS_DEFAULT_SITE.lower():
        return 1
    digest = hashlib.sha256(name.encode()).digest()
    return 2 + int.from_bytes(digest[:4], "big") % (2**31 - 2)


def iis_app_pool(name: str) -> str:
    return IIS_DEFAULT_POOL if name.lower() == IIS_DEFAULT_SITE.lower() else name


class Iis(WebServer):
    name = "iis"
    template = "iis/site.xml.j2"
    companions: ClassVar[Mapping[str, str]] = {".ps1": "iis/site.ps1.j2"}
    redirect_variables = ("{SERVER_NAME}", "{REQUEST_URI}")
    filters: ClassVar[Mapping[str, Filter]] = {"powershell_quote": powershell_quote}
    # IIS matches URL paths to applications and virtual directories in any case.
    paths_ignore_case = True
    # Every IIS application has a folder, the root one too: IIS's own default content.
    default_root = "%SystemDrive%\\inetpub\\wwwroot"

    def missing_outputs(self, files: CertificateFiles) -> list[str]:
        return [] if files.pkcs12 else ["a pkcs12 output"]

    def default_commands(
        self, site: Site, paths: Sequence[str], family: OsFamily
    ) -> tuple[str | None, str | None]:
        # No test: IIS has no config test apart from loading the site. The script beside the
        # site XML imports the PFX, binds it and loads the site: run by default on a Windows
        # host, where IIS is. On a POSIX host (a share the Windows host reads, a staging copy)
        # there is no IIS and no PowerShell to run it: the files are written, nothing runs
        # unless the site's reload_command says what (docs/templates.md, IIS).
        if family != "windows":
            return None, None
        return None, f'powershell -NoProfile -ExecutionPolicy Bypass -File "{paths[1]}"'

    def check_site(self, site: Site) -> None:
        if any(ch in site.name for ch in '"\\/:*?<>|'):
            raise ValueError('an IIS site name cannot hold " \\ / : * ? < > |')

    def template_variables(self, site: Site, context: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "iis_site_id": iis_site_id(site.name),
            "iis_app_pool": iis_app_pool(site.name),
            "iis_default_root": self.default_root,
        }


SERVER = Iis()
