"""Who did something: a user in the browser, an API key, or the system itself."""

from __future__ import annotations

from dataclasses import dataclass

from crm.choices import ActorType


@dataclass(frozen=True)
class Actor:
    """Recorded on timeline events; the name is a snapshot so renames do not rewrite history."""

    type: str
    id: object | None
    name: str
    user: object | None = None  # the person behind it (the key's owner for API keys)

    @classmethod
    def system(cls) -> Actor:
        return cls(type=ActorType.SYSTEM, id=None, name="System")

    @classmethod
    def for_user(cls, user) -> Actor:
        return cls(type=ActorType.USER, id=user.pk, name=user.display_name, user=user)

    @classmethod
    def from_request(cls, request) -> Actor:
        api_key = getattr(request, "auth", None)
        if getattr(api_key, "prefix", None):
            return cls(type=ActorType.API_KEY, id=api_key.pk, name=api_key.name, user=api_key.user)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return cls.for_user(user)
        return cls.system()

    def as_dict(self) -> dict:
        return {"type": str(self.type), "id": str(self.id) if self.id else None, "name": self.name}
