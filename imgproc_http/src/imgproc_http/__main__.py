"""``python -m imgproc_http``: serve with the settings of the environment (``IMGPROC_*``)."""

from imgproc_core.settings import Settings
from imgproc_http.server import serve

if __name__ == "__main__":
    serve(Settings.from_env())
