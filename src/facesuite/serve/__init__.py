"""Local web service: the REST API and the dashboard (``facesuite serve``).

    from facesuite.serve import create_app
    app = create_app(gallery="people/")      # serve with uvicorn
"""

from facesuite.serve.app import create_app

__all__ = ["create_app"]
