"""tradewind.runtime: a supervised actor runtime on trio. It knows nothing about trading."""

from tradewind.runtime._actor import Actor as Actor
from tradewind.runtime._actor import ActorContext as ActorContext
from tradewind.runtime._actor import ActorRef as ActorRef
from tradewind.runtime._errors import ActorNotFound as ActorNotFound
from tradewind.runtime._errors import AskTimeout as AskTimeout
from tradewind.runtime._errors import ConfigError as ConfigError
from tradewind.runtime._errors import HandlerTimeout as HandlerTimeout
from tradewind.runtime._errors import InvalidSpec as InvalidSpec
from tradewind.runtime._errors import MailboxClosed as MailboxClosed
from tradewind.runtime._errors import MailboxFull as MailboxFull
from tradewind.runtime._errors import MessageDropped as MessageDropped
from tradewind.runtime._errors import SupervisorFailed as SupervisorFailed
from tradewind.runtime._errors import TradewindError as TradewindError
from tradewind.runtime._intensity import Backoff as Backoff
from tradewind.runtime._records import ActorStatistics as ActorStatistics
from tradewind.runtime._records import DeadLetter as DeadLetter
from tradewind.runtime._records import ProcessStatistics as ProcessStatistics
from tradewind.runtime._records import SystemStatistics as SystemStatistics
from tradewind.runtime._specs import ChildSpec as ChildSpec
from tradewind.runtime._specs import MailboxSpec as MailboxSpec
from tradewind.runtime._specs import Overflow as Overflow
from tradewind.runtime._specs import ProcessSpec as ProcessSpec
from tradewind.runtime._specs import Restart as Restart
from tradewind.runtime._specs import RestartStrategy as RestartStrategy
from tradewind.runtime._specs import SupervisorSpec as SupervisorSpec
from tradewind.runtime._system import ActorSystem as ActorSystem
from tradewind.runtime._system import open_actor_system as open_actor_system

# --- services: config, logging, asyncio bridge, processes ---
# isort: split
from typing import TYPE_CHECKING

from tradewind.runtime._config import Secret as Secret
from tradewind.runtime._config import dump_config as dump_config
from tradewind.runtime._config import fraction as fraction
from tradewind.runtime._config import in_range as in_range
from tradewind.runtime._config import load_config as load_config
from tradewind.runtime._config import non_empty as non_empty
from tradewind.runtime._config import non_negative as non_negative
from tradewind.runtime._config import positive as positive
from tradewind.runtime._errors import ProcessExited as ProcessExited
from tradewind.runtime._errors import ProcessStartFailed as ProcessStartFailed
from tradewind.runtime._logging import configure_logging as configure_logging
from tradewind.runtime._logging import redact_secrets as redact_secrets
from tradewind.runtime._process import run_process as run_process

# The asyncio bridge is loaded on first use, not with the package: importing trio-asyncio
# takes about 0.1 s and replaces asyncio's event loop policy for the whole process (a
# plain `asyncio.run` elsewhere would then run on trio-asyncio's loop). Programs that
# never bridge to asyncio should not pay for it or be changed by it.
if TYPE_CHECKING:
    from tradewind.runtime._aio import aio_as_trio as aio_as_trio
    from tradewind.runtime._aio import open_aio_loop as open_aio_loop
    from tradewind.runtime._aio import run_aio as run_aio

_LAZY_AIO = frozenset({"aio_as_trio", "open_aio_loop", "run_aio"})


def __getattr__(name: str) -> object:
    if name in _LAZY_AIO:
        from tradewind.runtime import _aio  # noqa: PLC0415 - loaded on first use, see above

        return getattr(_aio, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
