from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    SESSION_STATE_IDLE: _ClassVar[SessionState]
    SESSION_STATE_LISTENING: _ClassVar[SessionState]
    SESSION_STATE_THINKING: _ClassVar[SessionState]
    SESSION_STATE_SPEAKING: _ClassVar[SessionState]
    SESSION_STATE_INTERRUPTED: _ClassVar[SessionState]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_USER: _ClassVar[Role]
    ROLE_ASSISTANT: _ClassVar[Role]
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_IDLE: SessionState
SESSION_STATE_LISTENING: SessionState
SESSION_STATE_THINKING: SessionState
SESSION_STATE_SPEAKING: SessionState
SESSION_STATE_INTERRUPTED: SessionState
ROLE_UNSPECIFIED: Role
ROLE_USER: Role
ROLE_ASSISTANT: Role

class SessionStart(_message.Message):
    __slots__ = ("session_id", "agent", "input_sample_rate_hertz", "output_sample_rate_hertz", "variables", "user_id", "resume_token", "token_id", "token_expires_at")
    class VariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    INPUT_SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    agent: str
    input_sample_rate_hertz: int
    output_sample_rate_hertz: int
    variables: _containers.ScalarMap[str, str]
    user_id: str
    resume_token: str
    token_id: str
    token_expires_at: int
    def __init__(self, session_id: _Optional[str] = ..., agent: _Optional[str] = ..., input_sample_rate_hertz: _Optional[int] = ..., output_sample_rate_hertz: _Optional[int] = ..., variables: _Optional[_Mapping[str, str]] = ..., user_id: _Optional[str] = ..., resume_token: _Optional[str] = ..., token_id: _Optional[str] = ..., token_expires_at: _Optional[int] = ...) -> None: ...

class InputText(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class Interrupt(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PlaybackReport(_message.Message):
    __slots__ = ("turn_id", "played_ms", "is_done")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAYED_MS_FIELD_NUMBER: _ClassVar[int]
    IS_DONE_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    played_ms: int
    is_done: bool
    def __init__(self, turn_id: _Optional[str] = ..., played_ms: _Optional[int] = ..., is_done: bool = ...) -> None: ...

class EndSession(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("start", "audio", "input_text", "interrupt", "playback", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    INPUT_TEXT_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: SessionStart
    audio: bytes
    input_text: InputText
    interrupt: Interrupt
    playback: PlaybackReport
    end: EndSession
    def __init__(self, start: _Optional[_Union[SessionStart, _Mapping]] = ..., audio: _Optional[bytes] = ..., input_text: _Optional[_Union[InputText, _Mapping]] = ..., interrupt: _Optional[_Union[Interrupt, _Mapping]] = ..., playback: _Optional[_Union[PlaybackReport, _Mapping]] = ..., end: _Optional[_Union[EndSession, _Mapping]] = ...) -> None: ...

class SessionStarted(_message.Message):
    __slots__ = ("session_id", "agent", "is_resumed", "resume_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    IS_RESUMED_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    agent: str
    is_resumed: bool
    resume_token: str
    def __init__(self, session_id: _Optional[str] = ..., agent: _Optional[str] = ..., is_resumed: bool = ..., resume_token: _Optional[str] = ...) -> None: ...

class StateChanged(_message.Message):
    __slots__ = ("state", "turn_id")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    state: SessionState
    turn_id: str
    def __init__(self, state: _Optional[_Union[SessionState, str]] = ..., turn_id: _Optional[str] = ...) -> None: ...

class TranscriptEvent(_message.Message):
    __slots__ = ("role", "text", "is_final", "turn_id")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    role: Role
    text: str
    is_final: bool
    turn_id: str
    def __init__(self, role: _Optional[_Union[Role, str]] = ..., text: _Optional[str] = ..., is_final: bool = ..., turn_id: _Optional[str] = ...) -> None: ...

class VoiceActivity(_message.Message):
    __slots__ = ("is_speaking", "offset_ms")
    IS_SPEAKING_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    is_speaking: bool
    offset_ms: int
    def __init__(self, is_speaking: bool = ..., offset_ms: _Optional[int] = ...) -> None: ...

class ResponseText(_message.Message):
    __slots__ = ("turn_id", "delta")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    delta: str
    def __init__(self, turn_id: _Optional[str] = ..., delta: _Optional[str] = ...) -> None: ...

class ResponseAudio(_message.Message):
    __slots__ = ("turn_id", "audio")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    audio: bytes
    def __init__(self, turn_id: _Optional[str] = ..., audio: _Optional[bytes] = ...) -> None: ...

class ResponseDone(_message.Message):
    __slots__ = ("turn_id", "status")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    status: str
    def __init__(self, turn_id: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class PlaybackStop(_message.Message):
    __slots__ = ("turn_id",)
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    def __init__(self, turn_id: _Optional[str] = ...) -> None: ...

class LatencyReport(_message.Message):
    __slots__ = ("turn_id", "stt_ms", "llm_ms", "tts_ms", "total_ms")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    STT_MS_FIELD_NUMBER: _ClassVar[int]
    LLM_MS_FIELD_NUMBER: _ClassVar[int]
    TTS_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    stt_ms: int
    llm_ms: int
    tts_ms: int
    total_ms: int
    def __init__(self, turn_id: _Optional[str] = ..., stt_ms: _Optional[int] = ..., llm_ms: _Optional[int] = ..., tts_ms: _Optional[int] = ..., total_ms: _Optional[int] = ...) -> None: ...

class SessionError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class NotificationStarted(_message.Message):
    __slots__ = ("notification_id", "text", "priority", "source")
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    text: str
    priority: str
    source: str
    def __init__(self, notification_id: _Optional[str] = ..., text: _Optional[str] = ..., priority: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class AgentChanged(_message.Message):
    __slots__ = ("turn_id", "from_agent", "to_agent", "reason")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_AGENT_FIELD_NUMBER: _ClassVar[int]
    TO_AGENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    from_agent: str
    to_agent: str
    reason: str
    def __init__(self, turn_id: _Optional[str] = ..., from_agent: _Optional[str] = ..., to_agent: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SessionResponse(_message.Message):
    __slots__ = ("started", "state", "voice_activity", "transcript", "response_text", "audio", "response_done", "playback_stop", "latency", "error", "notification", "agent_changed")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VOICE_ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TEXT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_DONE_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_STOP_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    AGENT_CHANGED_FIELD_NUMBER: _ClassVar[int]
    started: SessionStarted
    state: StateChanged
    voice_activity: VoiceActivity
    transcript: TranscriptEvent
    response_text: ResponseText
    audio: ResponseAudio
    response_done: ResponseDone
    playback_stop: PlaybackStop
    latency: LatencyReport
    error: SessionError
    notification: NotificationStarted
    agent_changed: AgentChanged
    def __init__(self, started: _Optional[_Union[SessionStarted, _Mapping]] = ..., state: _Optional[_Union[StateChanged, _Mapping]] = ..., voice_activity: _Optional[_Union[VoiceActivity, _Mapping]] = ..., transcript: _Optional[_Union[TranscriptEvent, _Mapping]] = ..., response_text: _Optional[_Union[ResponseText, _Mapping]] = ..., audio: _Optional[_Union[ResponseAudio, _Mapping]] = ..., response_done: _Optional[_Union[ResponseDone, _Mapping]] = ..., playback_stop: _Optional[_Union[PlaybackStop, _Mapping]] = ..., latency: _Optional[_Union[LatencyReport, _Mapping]] = ..., error: _Optional[_Union[SessionError, _Mapping]] = ..., notification: _Optional[_Union[NotificationStarted, _Mapping]] = ..., agent_changed: _Optional[_Union[AgentChanged, _Mapping]] = ...) -> None: ...
