"""The engine: numpy, OpenCV, Pillow, ONNX Runtime, MediaPipe. No Qt, no torch (a test enforces it)."""
