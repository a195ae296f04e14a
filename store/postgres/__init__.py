"""The store on PostgreSQL: production (``store.postgres.backend.BACKEND``)."""
