"""flask-recovery: service recovery (recognize, resolve, reconnect) for Flask booking sites."""

from .config import ConfigError
from .entities import Booking, NaiveDatetimeError, Staff
from .errors import Conflict, InvalidInput, NotAllowed, NotAuthenticated, NotFound, RecoveryError
from .extension import Recovery
from .models import UnsupportedDatabase

__version__ = "0.1.0"

__all__ = [
    "Booking",
    "ConfigError",
    "Conflict",
    "InvalidInput",
    "NaiveDatetimeError",
    "NotAllowed",
    "NotAuthenticated",
    "NotFound",
    "Recovery",
    "RecoveryError",
    "Staff",
    "UnsupportedDatabase",
]
