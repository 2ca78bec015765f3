"""The stack's settings: production's (config.settings), with the default Celery queue
this stack's own, so that tasks the app processes enqueue reach this stack's worker and
never one of another test run sharing the Redis server."""

import os

from config.settings import *  # noqa: F403

CELERY_TASK_DEFAULT_QUEUE = os.environ["LARKAUTH_TEST_CELERY_QUEUE"]
