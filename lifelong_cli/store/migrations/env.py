"""Alembic environment: llctl always hands over an open connection (no alembic.ini)."""

from alembic import context

from lifelong_cli.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
