from flask import Blueprint

bp = Blueprint("identity", __name__)

from app.identity import views  # noqa: E402,F401  (registers the routes)
