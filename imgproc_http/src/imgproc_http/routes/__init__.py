"""The API's routes, one module per area; :mod:`imgproc_http.app` assembles them."""
