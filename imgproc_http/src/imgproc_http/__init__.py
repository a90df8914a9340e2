"""imgproc http."""
