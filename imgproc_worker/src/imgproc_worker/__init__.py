"""imgproc worker."""
