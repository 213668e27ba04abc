# The portal is tested with the customers app's account fixtures.
from customers.tests.conftest import customer, customer_client, fast_password_hasher  # noqa: F401
