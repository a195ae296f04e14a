"""The HTTP entry point: producers' command door and, later, the dashboards' read API.

``orders serve`` runs it (uvicorn); ``api.app.create_app`` is the one app factory.
Routes get what they need from ``api.deps``, never build engines themselves.
"""
