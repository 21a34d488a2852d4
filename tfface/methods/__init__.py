"""tfface.methods."""

from tfface.methods.ddl import DDL, DDLHistogramCallback, build_ddl

__all__ = ["DDL", "DDLHistogramCallback", "build_ddl"]
