"""The supervisor <-> child wire protocol: typed messages in length-prefixed frames."""

from ._frames import (
    FRAME_TIMEOUT,
    MAX_FRAME_SIZE,
    BlockingFrames,
    FrameStream,
    ProtocolError,
    decode,
    encode,
)
from ._messages import (
    PROTOCOL_VERSION,
    ErrorInfo,
    Fatal,
    Hello,
    JobDone,
    Message,
    Ready,
    RunJob,
    Shutdown,
    Started,
    StopJob,
)

__all__ = [
    "FRAME_TIMEOUT",
    "MAX_FRAME_SIZE",
    "PROTOCOL_VERSION",
    "BlockingFrames",
    "ErrorInfo",
    "Fatal",
    "FrameStream",
    "Hello",
    "JobDone",
    "Message",
    "ProtocolError",
    "Ready",
    "RunJob",
    "Shutdown",
    "Started",
    "StopJob",
    "decode",
    "encode",
]
