import factory

from customers.models import CustomerUser


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CustomerUser
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"owner{n}@example.com")
    full_name = factory.Faker("name")
    email_verified = True
    password = factory.PostGenerationMethodCall("set_password", "a-very-good-password-1")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()
