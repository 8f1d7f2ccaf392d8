"""Small WSGI applications the worker tests serve."""
