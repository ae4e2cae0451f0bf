from flask import Blueprint

bp = Blueprint("image", __name__)

from app.image import views  # noqa: E402,F401  (registers the routes)
