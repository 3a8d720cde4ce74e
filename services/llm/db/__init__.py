"""The dealership's booking database (SQLAlchemy Core, SQLite by default, PostgreSQL by URL)."""
