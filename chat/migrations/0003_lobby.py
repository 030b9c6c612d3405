"""The ``lobby`` room exists after migrate: ``/`` redirects there."""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def create_lobby(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    Room = apps.get_model("chat", "Room")
    Room.objects.using(schema_editor.connection.alias).get_or_create(
        slug="lobby", defaults={"title": "Lobby"}
    )


class Migration(migrations.Migration):
    dependencies = [("chat", "0002_event_functions")]
    operations = [migrations.RunPython(create_lobby, migrations.RunPython.noop)]
