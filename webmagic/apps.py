from django.apps import AppConfig


class WebmagicConfig(AppConfig):
    name = "webmagic"
    verbose_name = "WebMagic"

    def ready(self):
        from . import checks  # noqa: F401  (registers system checks)
