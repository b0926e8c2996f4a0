from django.apps import AppConfig


class CacheAdminConfig(AppConfig):
    name = "cache_admin"
    verbose_name = "Price cache"
