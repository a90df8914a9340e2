"""imgproc core."""
