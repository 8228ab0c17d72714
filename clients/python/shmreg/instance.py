"""Instance: one registered instance of a service, as agents store it."""
from dataclasses import dataclass, field

from .errors import InvalidInstance


@dataclass(frozen=True)
class Instance:
    """One instance of a service, decoded from the msgpack map stored under
    svc/<service>/<id> (registry.Instance in Go). ttl is in nanoseconds."""

    service: str
    id: str
    address: str = ""
    port: int = 0
    weight: int = 0
    metadata: dict = field(default_factory=dict)
    health: str = ""
    ttl: int = 0

    @property
    def ttl_seconds(self):
        return self.ttl / 1e9

    @classmethod
    def decode(cls, value, key=None):
        """Decodes a stored value; InvalidInstance unless it is a msgpack map
        with at least service and id, each field of its documented type."""
        import msgpack

        where = " under %r" % key if key is not None else ""
        try:
            m = msgpack.unpackb(value, raw=False)
        except Exception as e:
            raise InvalidInstance("instance value%s is not msgpack: %s" % (where, e)) from None
        if not isinstance(m, dict):
            raise InvalidInstance("instance value%s is not a msgpack map" % where)
        if not m.get("service") or not m.get("id"):
            raise InvalidInstance("instance value%s lacks service or id" % where)
        types = {"service": str, "id": str, "address": str, "port": int, "weight": int,
                 "metadata": dict, "health": str, "ttl": int}
        kw = {}
        for name, want in types.items():
            v = m.get(name)
            if v is None:
                continue
            if not isinstance(v, want) or isinstance(v, bool):
                raise InvalidInstance("instance value%s: field %s is %s, not %s"
                                      % (where, name, type(v).__name__, want.__name__))
            kw[name] = v
        return cls(**kw)
