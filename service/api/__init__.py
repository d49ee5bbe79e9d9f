"""The HTTP service: REST API, MCP over streamable HTTP at ``/mcp``, and the search page at ``/``.

``create_app(settings, engine)`` builds the FastAPI application; ``server.serve(settings)`` runs it
under uvicorn. Import from the submodules; this package stays free of heavy imports.
"""
