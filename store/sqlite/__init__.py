"""The store on SQLite: the embedded mode, for the demo and for trying the system out
(``store.sqlite.backend.BACKEND``)."""
