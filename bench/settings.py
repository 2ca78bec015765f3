"""The project's settings plus the benchmark reference views (never used in production)."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
