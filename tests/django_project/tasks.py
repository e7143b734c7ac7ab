"""Tasks of the test project (django-tasks `@task` functions run by Chancy workers)."""

from django_tasks import task


@task(queue_name="django")
def add(a: int, b: int = 0) -> int:
    return a + b


@task(queue_name="django")
async def async_mul(a: int, b: int) -> int:
    return a * b


@task(queue_name="django")
def boom() -> None:
    raise ValueError("boom")


@task(queue_name="django")
def count_users() -> int:
    """Uses the ORM: in a process-executor child, only after the initializer ran."""
    from django.contrib.auth.models import User

    return User.objects.count()
