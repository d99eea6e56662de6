"""tradewind.runtime: a supervised actor runtime on trio. It knows nothing about trading."""

from tradewind.runtime._errors import ActorNotFound as ActorNotFound
from tradewind.runtime._errors import AskTimeout as AskTimeout
from tradewind.runtime._errors import ConfigError as ConfigError
from tradewind.runtime._errors import InvalidSpec as InvalidSpec
from tradewind.runtime._errors import MailboxClosed as MailboxClosed
from tradewind.runtime._errors import MailboxFull as MailboxFull
from tradewind.runtime._errors import SupervisorFailed as SupervisorFailed
from tradewind.runtime._errors import TradewindError as TradewindError
