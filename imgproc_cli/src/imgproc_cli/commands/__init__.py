"""The operator's commands (users, images, jobs, stats) and the batch ``transform``, one module
each; :mod:`imgproc_cli.app` puts them under ``imgproc``."""
