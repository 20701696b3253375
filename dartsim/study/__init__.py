"""Studies that run the real model many times (the drift-detector study)."""
