"""The Alembic branch ``recovery`` of flask-recovery (installed as flask_recovery.migrations)."""
