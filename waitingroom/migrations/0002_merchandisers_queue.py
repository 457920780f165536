"""Let merchandisers watch waiting rooms and release parked shoppers."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PERMISSIONS = [("waitingroom", "view_dropqueue"), ("waitingroom", "change_dropqueue")]


def grant(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.get(name="Merchandisers")
    for app_label, codename in PERMISSIONS:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name="Merchandisers").first()
    if group:
        for app_label, codename in PERMISSIONS:
            group.permissions.remove(*Permission.objects.filter(content_type__app_label=app_label, codename=codename))


class Migration(migrations.Migration):
    dependencies = [
        ("waitingroom", "0001_drop_queue"),
        ("inventory", "0002_merchandisers_group"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
