"""A minimal Django project for tests/test_django.py (settings read the test database from
the environment, set by that test module before ``django.setup()``)."""
