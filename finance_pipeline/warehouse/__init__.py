"""The warehouse: one SQLAlchemy URL (SQLite embedded, PostgreSQL in production), layered schemas."""

from finance_pipeline.warehouse.db import Warehouse, WarehouseError
from finance_pipeline.warehouse.migrate import apply_migrations, warehouse_for

__all__ = ["Warehouse", "WarehouseError", "apply_migrations", "warehouse_for"]
