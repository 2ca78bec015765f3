"""The one place larkauth loads lark-oapi, and every change it makes to it.

`import lark_oapi` runs the package `__init__`, which imports every service of the Open
Platform (about 10,600 modules, 170 MiB per process); `lark_oapi.api`'s `__init__` and
each service's `v1/__init__` and `model/__init__` do the same on a smaller scale.
larkauth calls three resources (user info, contact user, message), so this module
registers *stand-ins* for those packages in `sys.modules`: the real package (its
`__path__`, so submodules import as usual) without its `__init__` having run. Then it
imports just the resource modules it calls. An attribute a stand-in lacks (someone else
in the process doing `import lark_oapi as lark; lark.Client`) runs the real `__init__`
then, so other users of the SDK keep working and pay for it only when they use it.

The WebSocket client (`lark_oapi.ws.client`) imports the event dispatcher, which imports
every event model (about 125 MiB); the listener handles frames itself (see
`events_app.ws.client`), so `load_ws()` imports the client with a placeholder for the
dispatcher, only in the listener.

Patches, applied once when a client is made (`new_client`):
- transport: lark-oapi sends each call with `requests.request` (a new connection per
  call); its transport module gets `transport.PooledRequests` instead.
- token cache: `TokenManager.cache` (one class-level cache keyed by app id only) becomes
  `token_cache.ScopedCache`, which uses the store of the client making the call.
- logging: the "Lark" logger's own stdout handler is removed and its records propagate to
  the handlers of settings.LOGGING (same format, same redaction).

They reach into lark-oapi's internals, so they are checked against the version they were
written for: another installed version fails at import with `UnsupportedSdkVersion`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import sys
import threading
import types
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# The patches below were written against this release; read them again before changing it.
SUPPORTED_VERSION = "1.7.5"
LARK_LOGGER = "Lark"

# Packages whose `__init__` imports far more than larkauth uses.
_STAND_INS = (
    "lark_oapi",
    "lark_oapi.api",
    "lark_oapi.api.authen",
    "lark_oapi.api.authen.v1",
    "lark_oapi.api.authen.v1.model",
    "lark_oapi.api.authen.v1.resource",
    "lark_oapi.api.contact",
    "lark_oapi.api.contact.v3",
    "lark_oapi.api.contact.v3.model",
    "lark_oapi.api.contact.v3.resource",
    "lark_oapi.api.im",
    "lark_oapi.api.im.v1",
    "lark_oapi.api.im.v1.model",
    "lark_oapi.api.im.v1.resource",
)
_DISPATCHER = "lark_oapi.event.dispatcher_handler"


class UnsupportedSdkVersion(RuntimeError):
    pass


def check_version(installed: str | None = None) -> None:
    installed = installed or importlib.metadata.version("lark-oapi")
    if installed != SUPPORTED_VERSION:
        raise UnsupportedSdkVersion(
            f"lark-oapi {installed} is installed, but larkauth's lark-oapi seam "
            f"(larkauth/feishu/sdk.py) was written for {SUPPORTED_VERSION}: install "
            f"lark-oapi=={SUPPORTED_VERSION}, or check the patches of larkauth/feishu/sdk.py "
            "against the new release and update SUPPORTED_VERSION."
        )


def _stand_in(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    assert spec is not None, name
    assert spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    loaded = False
    lock = threading.RLock()

    def load_for(attribute: str) -> Any:
        nonlocal loaded
        if importlib.util.find_spec(f"{name}.{attribute}") is not None:
            return importlib.import_module(f"{name}.{attribute}")
        with lock:
            if not loaded:
                loaded = True
                del module.__dict__["__getattr__"]
                spec.loader.exec_module(module)  # type: ignore[union-attr]
        return getattr(module, attribute)

    def __getattr__(attribute: str) -> Any:
        if attribute.startswith("__") and attribute != "__all__":
            raise AttributeError(attribute)
        return load_for(attribute)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


check_version()
for _name in _STAND_INS:
    _stand_in(_name)

# The imports below need the stand-ins in place.
import lark_oapi.core.http.transport as _lark_transport  # noqa: E402
import lark_oapi.core.log  # noqa: E402,F401  (creates the "Lark" logger and its handler)
from lark_oapi.api.authen.v1.model.get_user_info_request import (  # noqa: E402
    GetUserInfoRequest as GetUserInfoRequest,
)
from lark_oapi.api.authen.v1.resource.user_info import UserInfo  # noqa: E402
from lark_oapi.api.contact.v3.model.get_user_request import (  # noqa: E402
    GetUserRequest as GetUserRequest,
)
from lark_oapi.api.contact.v3.resource.user import User  # noqa: E402
from lark_oapi.api.im.v1.model.create_message_request import (  # noqa: E402
    CreateMessageRequest as CreateMessageRequest,
)
from lark_oapi.api.im.v1.model.create_message_request_body import (  # noqa: E402
    CreateMessageRequestBody as CreateMessageRequestBody,
)
from lark_oapi.api.im.v1.model.patch_message_request import (  # noqa: E402
    PatchMessageRequest as PatchMessageRequest,
)
from lark_oapi.api.im.v1.model.patch_message_request_body import (  # noqa: E402
    PatchMessageRequestBody as PatchMessageRequestBody,
)
from lark_oapi.api.im.v1.resource.message import Message  # noqa: E402
from lark_oapi.core.exception import (  # noqa: E402
    NoAuthorizationException as NoAuthorizationException,
)
from lark_oapi.core.exception import (  # noqa: E402
    ObtainAccessTokenException as ObtainAccessTokenException,
)
from lark_oapi.core.exception import UnmarshalException as UnmarshalException  # noqa: E402
from lark_oapi.core.model import Config  # noqa: E402
from lark_oapi.core.model import RequestOption as RequestOption  # noqa: E402
from lark_oapi.core.token import TokenManager  # noqa: E402

from larkauth.feishu import token_cache, transport  # noqa: E402


def _route_lark_logging() -> None:
    lark_logger = logging.getLogger(LARK_LOGGER)
    for handler in list(lark_logger.handlers):
        lark_logger.removeHandler(handler)
    lark_logger.propagate = True


_route_lark_logging()
_patch_lock = threading.Lock()


def install_patches() -> None:
    """Idempotent; also re-installs the token cache after someone replaced it
    (`lark.Client.builder().cache(...)` elsewhere in the process)."""
    with _patch_lock:
        if not isinstance(_lark_transport.requests, transport.PooledRequests):
            _lark_transport.requests = transport.PooledRequests()
        if not isinstance(TokenManager.cache, token_cache.ScopedCache):
            TokenManager.cache = token_cache.ScopedCache(TokenManager.cache)


@dataclass(frozen=True)
class Client:
    """The resources of one application larkauth calls (lark-oapi's `Client` would
    build all of the Open Platform's services)."""

    user_info: Any
    user: Any
    message: Any


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def check_domain(domain: str) -> None:
    """As lark-oapi's `ClientBuilder.domain()`: an https origin (plain http on loopback
    only), without credentials, path, query or fragment. ValueError otherwise."""
    parts = urllib.parse.urlsplit(domain)
    if parts.scheme != "https" and not (
        parts.scheme == "http" and (parts.hostname or "").lower() in _LOOPBACK
    ):
        raise ValueError(f"domain must use https scheme (got {domain!r})")
    if not parts.netloc or "@" in parts.netloc or parts.path or parts.query or parts.fragment:
        raise ValueError(f"domain must be an https origin: scheme and host[:port] ({domain!r})")


def new_client(app_id: str, app_secret: str, *, domain: str, timeout: float) -> Client:
    """`domain`: the API's base URL (see `check_domain`)."""
    check_domain(domain)
    install_patches()
    config = Config()
    config.app_id = app_id
    config.app_secret = app_secret
    config.domain = domain
    config.timeout = timeout
    # Our own user tokens go in per call; without this lark-oapi refuses them.
    config.enable_set_token = True
    return Client(user_info=UserInfo(config), user=User(config), message=Message(config))


class _DispatcherPlaceholder:
    """Stands for `EventDispatcherHandler` in `lark_oapi.ws.client`, whose only use of it
    (`_handle_data_frame`) the listener replaces."""


@contextmanager
def _without_dispatcher() -> Iterator[None]:
    if _DISPATCHER in sys.modules:
        yield
        return
    placeholder = types.ModuleType(_DISPATCHER)
    placeholder.EventDispatcherHandler = _DispatcherPlaceholder  # type: ignore[attr-defined]
    sys.modules[_DISPATCHER] = placeholder
    try:
        yield
    finally:
        # The real module is imported as usual by whoever asks for it later.
        del sys.modules[_DISPATCHER]
        event = sys.modules.get("lark_oapi.event")
        if event is not None and getattr(event, "dispatcher_handler", None) is placeholder:
            delattr(event, "dispatcher_handler")


def load_ws() -> types.ModuleType:
    """`lark_oapi.ws.client` (the long-connection client), without the event dispatcher.
    Its names (`Client`, `loop`, the frame constants and models) are attributes."""
    with _without_dispatcher():
        module = importlib.import_module("lark_oapi.ws.client")
    return module


def loaded_modules() -> list[str]:
    """Names of the lark-oapi modules loaded in this process."""
    return sorted(name for name in sys.modules if name.split(".")[0] == "lark_oapi")
