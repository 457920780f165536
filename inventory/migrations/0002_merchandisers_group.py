"""Create the "Merchandisers" group with only what scheduling and watching drops needs."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Merchandisers"
PERMISSIONS = [
    ("inventory", "add_product"),
    ("inventory", "change_product"),
    ("inventory", "view_product"),
    ("inventory", "add_drop"),
    ("inventory", "change_drop"),
    ("inventory", "view_drop"),
    ("inventory", "view_order"),
]


def create_group(apps, schema_editor):
    # Permissions are normally made after all migrations; make them now so the group can hold them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    for app_label, codename in PERMISSIONS:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
