"""Let merchandisers see card holds and refunds, refund paid orders and put refunded units back on sale."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Merchandisers"
PERMISSIONS = [
    ("payments", "view_authorization"),
    ("payments", "view_refund"),
    ("payments", "issue_refund"),
    ("payments", "restock_refund"),
]


def grant(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    for app_label, codename in PERMISSIONS:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name=GROUP).first()
    if group is not None:
        for app_label, codename in PERMISSIONS:
            group.permissions.remove(*Permission.objects.filter(content_type__app_label=app_label, codename=codename))


class Migration(migrations.Migration):
    dependencies = [("payments", "0002_customers_events_refunds"), ("inventory", "0002_merchandisers_group")]

    operations = [migrations.RunPython(grant, revoke)]
