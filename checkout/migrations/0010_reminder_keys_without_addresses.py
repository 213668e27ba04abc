"""Recovery reminders' dedupe keys held the buyer's address (`recovery:<site>:<email>`); they now
hold a keyed digest of it (checkout.services.recovery.recovery_dedupe_key), so the promise of one
reminder per person and site survives the 90-day cleanup that forgets the address. Existing keys
are rewritten the same way (the digest is computed here as the service computes it)."""

from django.db import IntegrityError, migrations, transaction
from django.utils.crypto import salted_hmac

SALT = "webmagic.checkout.recovery-reminder"  # checkout.services.recovery.REMINDER_KEY_SALT
MARK = ":h:"


def digest_keys(apps, schema_editor):
    EmailLog = apps.get_model("webmagic", "EmailLog")
    legacy = (
        EmailLog.objects.filter(kind="recovery_reminder", dedupe_key__startswith="recovery:")
        .exclude(dedupe_key__contains=MARK).exclude(dedupe_key__startswith="recovery:session:")
        .exclude(dedupe_key__contains=":sha256:")
    )
    for pk, key in legacy.values_list("pk", "dedupe_key").iterator():
        _, site_id, email = key.split(":", 2)
        digest = salted_hmac(SALT, email.strip().lower(), algorithm="sha256").hexdigest()
        try:
            with transaction.atomic():
                EmailLog.objects.filter(pk=pk).update(dedupe_key=f"recovery:{site_id}{MARK}{digest}")
        except IntegrityError:
            pass  # an equal key exists already: this one keeps its old form (the cleanup rewrites it)


class Migration(migrations.Migration):
    dependencies = [
        ("checkout", "0009_subscription_reactivation"),
        ("webmagic", "0012_emaillog_outcome_unknown"),
    ]

    operations = [migrations.RunPython(digest_keys, migrations.RunPython.noop)]
