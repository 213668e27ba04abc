"""The Redis broker transport, safe to close while Redis is down.

kombu's Redis channel builds a fresh connection pool whenever it needs one, from its connection's
`client`. When the broker goes away, Celery's consumer first collects the broken connection (which
drops that `client`) and then closes it; closing the task channel drops its pools and then tries to
put the messages it still holds back on the queue, and an acknowledgement of a task that finishes
later tries to delete its message. With the `client` gone both fail with
`AttributeError: 'NoneType' object has no attribute 'hostname'`, which no one catches: the worker
exits ("Unrecoverable error") whenever Redis drops while a task is reserved or running.

Here that situation raises the Redis connection error it is, which those paths already expect
(closing ignores it, an acknowledgement logs "Couldn't ack"): the worker reconnects. Messages it
held stay in Redis's unacked set and are delivered again after the visibility timeout (our tasks
are idempotent); if Redis lost them in a restart, the sweeps re-drive the work they stood for.

Selected by `CELERY_BROKER_TRANSPORT` in settings for redis:// and rediss:// broker URLs.
"""

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class RedisChannel(kombu_redis.Channel):
    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was closed after a connection loss")
        # kombu-stubs leave out kombu's private _connparams, which this method extends.
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel
