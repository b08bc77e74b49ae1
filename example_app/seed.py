"""Deterministic demo data: 6 services, 4 masters, 12 clients, 20 bookings.

Bookings fall on yesterday, today and tomorrow in the salon's time zone, counted from
the moment of seeding. Ids are fixed, so tests and docs can name them (see README.md).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import text

from .helpers import salon_today, salon_tz
from .models import Client, Master, SalonBooking, Service, db

# id, name_ru, name_en, minutes, price in kopecks
SERVICES = [
    (1, "Женская стрижка", "Women's haircut", 60, 250000),
    (2, "Мужская стрижка", "Men's haircut", 45, 150000),
    (3, "Окрашивание", "Hair colouring", 120, 650000),
    (4, "Маникюр с покрытием", "Gel manicure", 90, 220000),
    (5, "Педикюр", "Pedicure", 90, 280000),
    (6, "Укладка", "Blow-dry and styling", 45, 180000),
]

# id, name, speciality key; master 4 works at the "north" branch
MASTERS = [
    (1, "Ольга Кузнецова", "stylist"),
    (2, "Дмитрий Волков", "barber"),
    (3, "Елена Павлова", "nails"),
    (4, "Светлана Морозова", "colourist"),
]
MASTER_LOCATION = {1: "center", 2: "center", 3: "center", 4: "north"}

# id, name, email, phone, locale
CLIENTS = [
    (1, "Анна Смирнова", "anna.smirnova@example.com", "+7 900 555-01-01", "ru"),
    (2, "Мария Иванова", "maria.ivanova@example.com", "+7 900 555-01-02", "ru"),
    (3, "Екатерина Соколова", "ekaterina.sokolova@example.com", "+7 900 555-01-03", "ru"),
    (4, "Татьяна Попова", "tatiana.popova@example.com", "+7 900 555-01-04", "ru"),
    (5, "Наталья Лебедева", "natalia.lebedeva@example.com", "+7 900 555-01-05", "ru"),
    (6, "Юлия Новикова", "yulia.novikova@example.com", "+7 900 555-01-06", "ru"),
    (7, "Алексей Фёдоров", "alexey.fedorov@example.com", "+7 900 555-01-07", "ru"),
    (8, "Сергей Петров", "sergey.petrov@example.com", "+7 900 555-01-08", "ru"),
    (9, "Дарья Михайлова", "daria.mikhailova@example.com", "+7 900 555-01-09", "ru"),
    (10, "Emma Clarke", "emma.clarke@example.com", "+44 20 7946 0101", "en"),
    (11, "Oliver Bennett", "oliver.bennett@example.com", "+44 20 7946 0102", "en"),
    (12, "Ксения Орлова", "ksenia.orlova@example.com", "+7 900 555-01-12", "ru"),
]

# id, day offset from today, local start "HH:MM", client, master, service, status
BOOKINGS = [
    # yesterday
    (1, -1, "10:00", 2, 1, 1, "completed"),
    (2, -1, "11:00", 8, 2, 2, "completed"),
    (3, -1, "12:00", 3, 3, 4, "completed"),
    (4, -1, "13:00", 4, 4, 3, "completed"),
    (5, -1, "15:00", 7, 2, 2, "no_show"),
    (6, -1, "16:00", 10, 3, 4, "completed"),
    (7, -1, "17:00", 5, 1, 6, "cancelled"),
    # today
    (8, 0, "10:00", 1, 1, 1, "completed"),
    (9, 0, "11:00", 6, 3, 5, "completed"),
    (10, 0, "12:00", 9, 4, 3, "booked"),
    (11, 0, "13:00", 11, 2, 2, "booked"),
    (12, 0, "14:30", 12, 1, 6, "booked"),
    (13, 0, "16:00", 10, 1, 1, "booked"),
    (14, 0, "17:30", 2, 3, 4, "booked"),
    # tomorrow
    (15, 1, "10:00", 5, 1, 1, "booked"),
    (16, 1, "11:00", 7, 2, 2, "booked"),
    (17, 1, "12:00", 3, 4, 3, "booked"),
    (18, 1, "13:30", 1, 3, 4, "booked"),
    (19, 1, "15:00", 4, 1, 6, "booked"),
    (20, 1, "16:00", 12, 3, 5, "booked"),
]


def wipe() -> None:
    """Delete every row of the salon's own tables (never the extension's)."""
    for model in (SalonBooking, Client, Master, Service):
        db.session.query(model).delete()
    db.session.flush()


def seed(today: date | None = None) -> None:
    """Replace the salon's rows with the demo data, bookings around ``today``."""
    tz = salon_tz()
    today = today or salon_today()
    wipe()
    services = {}
    for sid, name_ru, name_en, minutes, price in SERVICES:
        services[sid] = Service(id=sid, name_ru=name_ru, name_en=name_en, duration=minutes, price=price)
    db.session.add_all(services.values())
    db.session.add_all(Master(id=mid, name=name, speciality=spec) for mid, name, spec in MASTERS)
    db.session.add_all(
        Client(id=cid, name=name, email=email, phone=phone, locale=locale)
        for cid, name, email, phone, locale in CLIENTS
    )
    for bid, offset, hhmm, client_id, master_id, service_id, status in BOOKINGS:
        day = today + timedelta(days=offset)
        local_start = datetime.combine(day, time.fromisoformat(hhmm), tzinfo=tz)
        starts_at = local_start.astimezone(timezone.utc)
        service = services[service_id]
        db.session.add(
            SalonBooking(
                id=bid,
                client_id=client_id,
                master_id=master_id,
                service_id=service_id,
                starts_at=starts_at,
                ends_at=starts_at + timedelta(minutes=service.duration),
                price=service.price,
                status=status,
                location=MASTER_LOCATION[master_id],
            )
        )
    db.session.flush()
    _reset_sequences()
    db.session.commit()


def _reset_sequences() -> None:
    """After inserting explicit ids, move PostgreSQL's id sequences past them."""
    if db.engine.dialect.name != "postgresql":
        return
    for model in (Service, Master, Client, SalonBooking):
        table = model.__tablename__
        db.session.execute(
            text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 1))")
        )


def needs_seed() -> bool:
    """Whether the salon has no services yet (a fresh database)."""
    return db.session.query(Service.id).first() is None
