from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("checkout", "0010_reminder_keys_without_addresses"),
    ]

    operations = [
        migrations.AddField(
            model_name="checkoutsession",
            name="checkout_requested_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
