"""Unbound extensions, bound to the app in create_app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# A naming convention makes constraint names stable, which migrations depend on.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
login_manager = LoginManager()
csrf = CSRFProtect()


if TYPE_CHECKING:
    from .config import Settings
    from .vault import Vault

    # flask-sqlalchemy builds db.Model at run time; the type checker sees the declarative base
    # it is made from (same columns, same metadata).
    Model = Base
else:
    Model = db.Model


def current_settings() -> Settings:
    """The running app's Settings."""
    settings: Settings = current_app.extensions["vault_service.settings"]
    return settings


def current_vault() -> Vault:
    """The running app's Vault client."""
    vault: Vault = current_app.extensions["vault_service.vault"]
    return vault
