"""Create the "Payment operators" group: see card holds and refunds, refund paid orders, restock refunds.

Merchandisers keep only what scheduling drops needs; staff who handle money get this group too.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Payment operators"
PERMISSIONS = [
    ("inventory", "view_order"),
    ("inventory", "view_drop"),
    ("payments", "view_authorization"),
    ("payments", "view_refund"),
    ("payments", "issue_refund"),
    ("payments", "restock_refund"),
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
    dependencies = [("payments", "0002_customers_events_refunds"), ("inventory", "0002_merchandisers_group")]

    operations = [migrations.RunPython(create_group, remove_group)]
