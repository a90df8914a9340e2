"""Servers the API scenario starts: the bare Litestar baseline (imgproc itself is ``imgproc
serve``)."""
