"""Celery application used by test_celery.py (worker started with -A celery_app).

Broker and queue come from the environment so the worker subprocess and the
test process agree on them.
"""

import os

from celery import Celery

app = Celery(
    "interop",
    broker=os.environ.get("INTEROP_BROKER_URL", "amqp://guest:guest@localhost:5672/"),
    backend="rpc://",
)
app.conf.update(
    task_default_queue=os.environ.get("INTEROP_CELERY_QUEUE", "interop.celery"),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=3,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
)


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def fail(message):
    raise ValueError(message)
