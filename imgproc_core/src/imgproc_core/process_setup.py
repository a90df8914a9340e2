"""What a long-running process of the service does to itself once, at start-up: the memory
allocator tuned for decoding images, and the objects made while starting frozen out of the
garbage collector's passes.

The shells call these from here; the work is done by the adapters it concerns (Pillow's
allocator, the interpreter's collector), which a shell does not import.
"""

from imgproc_core.adapters.pillow.allocator import tune_allocator
from imgproc_core.adapters.system import freeze_start_up_objects

__all__ = ["freeze_start_up_objects", "tune_allocator"]
