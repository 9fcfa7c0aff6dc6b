"""The entity store: SQLAlchemy 2 + Alembic, one module per entity (model + repository)."""
