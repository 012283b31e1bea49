"""A database server login: its engine, address, optional database name, user and password."""

from __future__ import annotations

from .base import (
    HOST,
    PASSWORD,
    PORT,
    USERNAME,
    Field,
    FormSection,
    Kind,
    check_no_control_characters,
)

ENGINE = Field(
    "engine",
    "Engine",
    10,
    input="select",
    choices=(
        ("postgresql", "PostgreSQL"),
        ("mysql", "MySQL"),
        ("mariadb", "MariaDB"),
        ("mssql", "Microsoft SQL Server"),
        ("oracle", "Oracle"),
        ("mongodb", "MongoDB"),
        ("redis", "Redis"),
        ("other", "Other"),
    ),
)
DATABASE_NAME = Field(
    "database",
    "Database name",
    256,
    checks=(check_no_control_characters,),
    required=False,
    help="If the login is for one database.",
)

SECTION = FormSection(
    code="db",
    legend="Database",
    kinds=(Kind("database", "Database", (ENGINE, HOST, PORT, DATABASE_NAME, USERNAME, PASSWORD)),),
    position=40,
)
