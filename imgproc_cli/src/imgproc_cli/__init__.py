"""imgproc cli."""
