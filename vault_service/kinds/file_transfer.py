"""File transfer logins: FTP, SFTP and FTPS share their fields and one form section."""

from __future__ import annotations

from .base import HOST, PASSWORD, PORT, USERNAME, FormSection, Kind

_FIELDS = (HOST, PORT, USERNAME, PASSWORD)

SECTION = FormSection(
    code="ft",
    legend="File transfer (FTP / SFTP / FTPS)",
    kinds=(
        Kind("ftp", "FTP", _FIELDS),
        Kind("sftp", "SFTP", _FIELDS),
        Kind("ftps", "FTPS", _FIELDS),
    ),
    position=10,
    choice_label="Protocol",
)
