"""The salon's own tables: services, masters, clients and bookings.

Money is stored as integer kopecks. Times are stored in UTC and always come back as
timezone-aware ``datetime`` objects, on SQLite too (see :class:`UTCDateTime`).
"""

from __future__ import annotations

from datetime import datetime, timezone

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

db = SQLAlchemy()

BOOKING_STATUSES = ("booked", "completed", "cancelled", "no_show")
LOCALES = ("ru", "en")


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    SQLite keeps no offset, so values are written as naive UTC and read back with
    ``tzinfo=UTC``; PostgreSQL gets a ``timestamptz``. Naive input is refused rather
    than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware value")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Service(db.Model):
    __tablename__ = "salon_service"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name_ru: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))
    duration: Mapped[int] = mapped_column(Integer)  # minutes
    price: Mapped[int] = mapped_column(Integer)  # kopecks

    def name(self, locale: str | None) -> str:
        """The service's name in ``locale`` (``en``), Russian otherwise."""
        return self.name_en if str(locale or "").startswith("en") else self.name_ru


class Master(db.Model):
    __tablename__ = "salon_master"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    speciality: Mapped[str] = mapped_column(String(40))  # a key, see views.SPECIALITIES


class Client(db.Model):
    __tablename__ = "salon_client"
    __table_args__ = (CheckConstraint("locale IN ('ru', 'en')", name="salon_client_locale"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(5), default="ru")


class SalonBooking(db.Model):
    __tablename__ = "salon_booking"
    __table_args__ = (
        CheckConstraint(
            "status IN ('booked', 'completed', 'cancelled', 'no_show')",
            name="salon_booking_status",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("salon_client.id"), index=True)
    master_id: Mapped[int] = mapped_column(ForeignKey("salon_master.id"), index=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("salon_service.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    price: Mapped[int] = mapped_column(Integer)  # kopecks, fixed when booked
    status: Mapped[str] = mapped_column(String(16), default="booked")
    location: Mapped[str] = mapped_column(String(40), default="center")

    client: Mapped[Client] = relationship(lazy="joined")
    master: Mapped[Master] = relationship(lazy="joined")
    service: Mapped[Service] = relationship(lazy="joined")
