from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_PHASE_UNSPECIFIED: _ClassVar[ToolPhase]
    TOOL_PHASE_STARTED: _ClassVar[ToolPhase]
    TOOL_PHASE_COMPLETED: _ClassVar[ToolPhase]
    TOOL_PHASE_FAILED: _ClassVar[ToolPhase]

class TurnStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TURN_STATUS_UNSPECIFIED: _ClassVar[TurnStatus]
    TURN_STATUS_COMPLETED: _ClassVar[TurnStatus]
    TURN_STATUS_CANCELLED: _ClassVar[TurnStatus]
    TURN_STATUS_FAILED: _ClassVar[TurnStatus]
TOOL_PHASE_UNSPECIFIED: ToolPhase
TOOL_PHASE_STARTED: ToolPhase
TOOL_PHASE_COMPLETED: ToolPhase
TOOL_PHASE_FAILED: ToolPhase
TURN_STATUS_UNSPECIFIED: TurnStatus
TURN_STATUS_COMPLETED: TurnStatus
TURN_STATUS_CANCELLED: TurnStatus
TURN_STATUS_FAILED: TurnStatus

class DialogueConfig(_message.Message):
    __slots__ = ("session_id", "agent", "variables")
    class VariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    agent: str
    variables: _containers.ScalarMap[str, str]
    def __init__(self, session_id: _Optional[str] = ..., agent: _Optional[str] = ..., variables: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UserTurn(_message.Message):
    __slots__ = ("turn_id", "text", "trace_context")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    text: str
    trace_context: _containers.ScalarMap[str, str]
    def __init__(self, turn_id: _Optional[str] = ..., text: _Optional[str] = ..., trace_context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CancelTurn(_message.Message):
    __slots__ = ("turn_id",)
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    def __init__(self, turn_id: _Optional[str] = ...) -> None: ...

class HeardReport(_message.Message):
    __slots__ = ("turn_id", "heard_text", "is_complete")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    HEARD_TEXT_FIELD_NUMBER: _ClassVar[int]
    IS_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    heard_text: str
    is_complete: bool
    def __init__(self, turn_id: _Optional[str] = ..., heard_text: _Optional[str] = ..., is_complete: bool = ...) -> None: ...

class ConverseRequest(_message.Message):
    __slots__ = ("config", "user_turn", "cancel", "heard")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    USER_TURN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    HEARD_FIELD_NUMBER: _ClassVar[int]
    config: DialogueConfig
    user_turn: UserTurn
    cancel: CancelTurn
    heard: HeardReport
    def __init__(self, config: _Optional[_Union[DialogueConfig, _Mapping]] = ..., user_turn: _Optional[_Union[UserTurn, _Mapping]] = ..., cancel: _Optional[_Union[CancelTurn, _Mapping]] = ..., heard: _Optional[_Union[HeardReport, _Mapping]] = ...) -> None: ...

class ConversationReady(_message.Message):
    __slots__ = ("agent", "voice", "speed", "greeting", "model")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    GREETING_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    agent: str
    voice: str
    speed: float
    greeting: str
    model: str
    def __init__(self, agent: _Optional[str] = ..., voice: _Optional[str] = ..., speed: _Optional[float] = ..., greeting: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("turn_id", "delta")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    delta: str
    def __init__(self, turn_id: _Optional[str] = ..., delta: _Optional[str] = ...) -> None: ...

class ToolActivity(_message.Message):
    __slots__ = ("turn_id", "call_id", "name", "arguments_json", "phase", "result_json")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    call_id: str
    name: str
    arguments_json: str
    phase: ToolPhase
    result_json: str
    def __init__(self, turn_id: _Optional[str] = ..., call_id: _Optional[str] = ..., name: _Optional[str] = ..., arguments_json: _Optional[str] = ..., phase: _Optional[_Union[ToolPhase, str]] = ..., result_json: _Optional[str] = ...) -> None: ...

class TurnComplete(_message.Message):
    __slots__ = ("turn_id", "status", "text", "error_message", "first_token_ms")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    status: TurnStatus
    text: str
    error_message: str
    first_token_ms: int
    def __init__(self, turn_id: _Optional[str] = ..., status: _Optional[_Union[TurnStatus, str]] = ..., text: _Optional[str] = ..., error_message: _Optional[str] = ..., first_token_ms: _Optional[int] = ...) -> None: ...

class Handoff(_message.Message):
    __slots__ = ("turn_id", "from_agent", "to_agent", "voice", "speed", "reason")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_AGENT_FIELD_NUMBER: _ClassVar[int]
    TO_AGENT_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    from_agent: str
    to_agent: str
    voice: str
    speed: float
    reason: str
    def __init__(self, turn_id: _Optional[str] = ..., from_agent: _Optional[str] = ..., to_agent: _Optional[str] = ..., voice: _Optional[str] = ..., speed: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class ConverseResponse(_message.Message):
    __slots__ = ("ready", "delta", "tool", "done", "handoff")
    READY_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    ready: ConversationReady
    delta: TextDelta
    tool: ToolActivity
    done: TurnComplete
    handoff: Handoff
    def __init__(self, ready: _Optional[_Union[ConversationReady, _Mapping]] = ..., delta: _Optional[_Union[TextDelta, _Mapping]] = ..., tool: _Optional[_Union[ToolActivity, _Mapping]] = ..., done: _Optional[_Union[TurnComplete, _Mapping]] = ..., handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...
