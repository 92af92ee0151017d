"""Server-rendered pages: templates/ holds the Jinja2 templates, static/ the CSS and scripts."""

from pedipacs.web.pages.landing import landing_router

__all__ = ["landing_router"]
