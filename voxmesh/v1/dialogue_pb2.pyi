from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
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

class RouteMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTE_METHOD_UNSPECIFIED: _ClassVar[RouteMethod]
    ROUTE_METHOD_SEMANTIC: _ClassVar[RouteMethod]
    ROUTE_METHOD_KEYWORDS: _ClassVar[RouteMethod]
    ROUTE_METHOD_MODEL: _ClassVar[RouteMethod]

class NotificationPriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFICATION_PRIORITY_UNSPECIFIED: _ClassVar[NotificationPriority]
    NOTIFICATION_PRIORITY_NORMAL: _ClassVar[NotificationPriority]
    NOTIFICATION_PRIORITY_HIGH: _ClassVar[NotificationPriority]
TOOL_PHASE_UNSPECIFIED: ToolPhase
TOOL_PHASE_STARTED: ToolPhase
TOOL_PHASE_COMPLETED: ToolPhase
TOOL_PHASE_FAILED: ToolPhase
TURN_STATUS_UNSPECIFIED: TurnStatus
TURN_STATUS_COMPLETED: TurnStatus
TURN_STATUS_CANCELLED: TurnStatus
TURN_STATUS_FAILED: TurnStatus
ROUTE_METHOD_UNSPECIFIED: RouteMethod
ROUTE_METHOD_SEMANTIC: RouteMethod
ROUTE_METHOD_KEYWORDS: RouteMethod
ROUTE_METHOD_MODEL: RouteMethod
NOTIFICATION_PRIORITY_UNSPECIFIED: NotificationPriority
NOTIFICATION_PRIORITY_NORMAL: NotificationPriority
NOTIFICATION_PRIORITY_HIGH: NotificationPriority

class DialogueConfig(_message.Message):
    __slots__ = ("session_id", "agent", "variables", "user_id", "resume_token")
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
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    agent: str
    variables: _containers.ScalarMap[str, str]
    user_id: str
    resume_token: str
    def __init__(self, session_id: _Optional[str] = ..., agent: _Optional[str] = ..., variables: _Optional[_Mapping[str, str]] = ..., user_id: _Optional[str] = ..., resume_token: _Optional[str] = ...) -> None: ...

class UserTurn(_message.Message):
    __slots__ = ("turn_id", "text", "trace_context", "speculative")
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
    SPECULATIVE_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    text: str
    trace_context: _containers.ScalarMap[str, str]
    speculative: bool
    def __init__(self, turn_id: _Optional[str] = ..., text: _Optional[str] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., speculative: bool = ...) -> None: ...

class CancelTurn(_message.Message):
    __slots__ = ("turn_id", "discard")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    DISCARD_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    discard: bool
    def __init__(self, turn_id: _Optional[str] = ..., discard: bool = ...) -> None: ...

class CommitTurn(_message.Message):
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

class NotificationDelivered(_message.Message):
    __slots__ = ("notification_id",)
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    def __init__(self, notification_id: _Optional[str] = ...) -> None: ...

class ConverseRequest(_message.Message):
    __slots__ = ("config", "user_turn", "cancel", "heard", "delivered", "commit")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    USER_TURN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    HEARD_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    config: DialogueConfig
    user_turn: UserTurn
    cancel: CancelTurn
    heard: HeardReport
    delivered: NotificationDelivered
    commit: CommitTurn
    def __init__(self, config: _Optional[_Union[DialogueConfig, _Mapping]] = ..., user_turn: _Optional[_Union[UserTurn, _Mapping]] = ..., cancel: _Optional[_Union[CancelTurn, _Mapping]] = ..., heard: _Optional[_Union[HeardReport, _Mapping]] = ..., delivered: _Optional[_Union[NotificationDelivered, _Mapping]] = ..., commit: _Optional[_Union[CommitTurn, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("turn_id", "call_id", "name", "arguments_json", "phase", "result_json", "refusal_reason")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_REASON_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    call_id: str
    name: str
    arguments_json: str
    phase: ToolPhase
    result_json: str
    refusal_reason: str
    def __init__(self, turn_id: _Optional[str] = ..., call_id: _Optional[str] = ..., name: _Optional[str] = ..., arguments_json: _Optional[str] = ..., phase: _Optional[_Union[ToolPhase, str]] = ..., result_json: _Optional[str] = ..., refusal_reason: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("turn_id", "from_agent", "to_agent", "voice", "speed", "reason", "intent", "confidence", "method")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_AGENT_FIELD_NUMBER: _ClassVar[int]
    TO_AGENT_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    from_agent: str
    to_agent: str
    voice: str
    speed: float
    reason: str
    intent: str
    confidence: float
    method: RouteMethod
    def __init__(self, turn_id: _Optional[str] = ..., from_agent: _Optional[str] = ..., to_agent: _Optional[str] = ..., voice: _Optional[str] = ..., speed: _Optional[float] = ..., reason: _Optional[str] = ..., intent: _Optional[str] = ..., confidence: _Optional[float] = ..., method: _Optional[_Union[RouteMethod, str]] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("source", "score", "text")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    source: str
    score: float
    text: str
    def __init__(self, source: _Optional[str] = ..., score: _Optional[float] = ..., text: _Optional[str] = ...) -> None: ...

class Retrieval(_message.Message):
    __slots__ = ("turn_id", "knowledge_base", "citations", "retrieval_ms")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_MS_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    knowledge_base: str
    citations: _containers.RepeatedCompositeFieldContainer[Citation]
    retrieval_ms: float
    def __init__(self, turn_id: _Optional[str] = ..., knowledge_base: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ..., retrieval_ms: _Optional[float] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("notification_id", "text", "priority", "source")
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    text: str
    priority: NotificationPriority
    source: str
    def __init__(self, notification_id: _Optional[str] = ..., text: _Optional[str] = ..., priority: _Optional[_Union[NotificationPriority, str]] = ..., source: _Optional[str] = ...) -> None: ...

class ConverseResponse(_message.Message):
    __slots__ = ("ready", "delta", "tool", "done", "handoff", "retrieval", "notification")
    READY_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    ready: ConversationReady
    delta: TextDelta
    tool: ToolActivity
    done: TurnComplete
    handoff: Handoff
    retrieval: Retrieval
    notification: Notification
    def __init__(self, ready: _Optional[_Union[ConversationReady, _Mapping]] = ..., delta: _Optional[_Union[TextDelta, _Mapping]] = ..., tool: _Optional[_Union[ToolActivity, _Mapping]] = ..., done: _Optional[_Union[TurnComplete, _Mapping]] = ..., handoff: _Optional[_Union[Handoff, _Mapping]] = ..., retrieval: _Optional[_Union[Retrieval, _Mapping]] = ..., notification: _Optional[_Union[Notification, _Mapping]] = ...) -> None: ...
