"""Small runnable examples of the Python API (python -m ravensp.examples.<name>)."""
