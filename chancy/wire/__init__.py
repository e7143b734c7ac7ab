"""The supervisor <-> child wire protocol: typed messages in length-prefixed frames."""

from ._frames import (
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
    StopJob,
)

__all__ = [
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
    "StopJob",
    "decode",
    "encode",
]
