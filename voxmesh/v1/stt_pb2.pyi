from voxmesh.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TurnEndReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TURN_END_REASON_UNSPECIFIED: _ClassVar[TurnEndReason]
    TURN_END_REASON_SEMANTIC: _ClassVar[TurnEndReason]
    TURN_END_REASON_SILENCE: _ClassVar[TurnEndReason]
    TURN_END_REASON_MAX_SILENCE: _ClassVar[TurnEndReason]
    TURN_END_REASON_END_OF_INPUT: _ClassVar[TurnEndReason]
TURN_END_REASON_UNSPECIFIED: TurnEndReason
TURN_END_REASON_SEMANTIC: TurnEndReason
TURN_END_REASON_SILENCE: TurnEndReason
TURN_END_REASON_MAX_SILENCE: TurnEndReason
TURN_END_REASON_END_OF_INPUT: TurnEndReason

class VadConfig(_message.Message):
    __slots__ = ("threshold", "start_ms", "stop_ms", "min_speech_ms")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    STOP_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_SPEECH_MS_FIELD_NUMBER: _ClassVar[int]
    threshold: float
    start_ms: int
    stop_ms: int
    min_speech_ms: int
    def __init__(self, threshold: _Optional[float] = ..., start_ms: _Optional[int] = ..., stop_ms: _Optional[int] = ..., min_speech_ms: _Optional[int] = ...) -> None: ...

class TurnConfig(_message.Message):
    __slots__ = ("enable_semantic_turn", "completion_threshold", "turn_silence_ms", "max_silence_ms")
    ENABLE_SEMANTIC_TURN_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TURN_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    enable_semantic_turn: bool
    completion_threshold: float
    turn_silence_ms: int
    max_silence_ms: int
    def __init__(self, enable_semantic_turn: bool = ..., completion_threshold: _Optional[float] = ..., turn_silence_ms: _Optional[int] = ..., max_silence_ms: _Optional[int] = ...) -> None: ...

class RecognitionConfig(_message.Message):
    __slots__ = ("audio_format", "language_code", "enable_partial_results", "partial_interval_ms", "vad", "session_id", "turn")
    AUDIO_FORMAT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODE_FIELD_NUMBER: _ClassVar[int]
    ENABLE_PARTIAL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    VAD_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_FIELD_NUMBER: _ClassVar[int]
    audio_format: _audio_pb2.AudioFormat
    language_code: str
    enable_partial_results: bool
    partial_interval_ms: int
    vad: VadConfig
    session_id: str
    turn: TurnConfig
    def __init__(self, audio_format: _Optional[_Union[_audio_pb2.AudioFormat, _Mapping]] = ..., language_code: _Optional[str] = ..., enable_partial_results: bool = ..., partial_interval_ms: _Optional[int] = ..., vad: _Optional[_Union[VadConfig, _Mapping]] = ..., session_id: _Optional[str] = ..., turn: _Optional[_Union[TurnConfig, _Mapping]] = ...) -> None: ...

class StreamingRecognizeRequest(_message.Message):
    __slots__ = ("config", "audio", "end_of_input")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    END_OF_INPUT_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio: bytes
    end_of_input: _audio_pb2.EndOfInput
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio: _Optional[bytes] = ..., end_of_input: _Optional[_Union[_audio_pb2.EndOfInput, _Mapping]] = ...) -> None: ...

class SpeechStarted(_message.Message):
    __slots__ = ("utterance_id", "offset_ms")
    UTTERANCE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    utterance_id: int
    offset_ms: int
    def __init__(self, utterance_id: _Optional[int] = ..., offset_ms: _Optional[int] = ...) -> None: ...

class SpeechStopped(_message.Message):
    __slots__ = ("utterance_id", "offset_ms")
    UTTERANCE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    utterance_id: int
    offset_ms: int
    def __init__(self, utterance_id: _Optional[int] = ..., offset_ms: _Optional[int] = ...) -> None: ...

class Transcript(_message.Message):
    __slots__ = ("utterance_id", "text", "start_offset_ms", "end_offset_ms", "is_stable", "words", "decode_ms", "stable_text", "covers_speech_end")
    UTTERANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    END_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    IS_STABLE_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    STABLE_TEXT_FIELD_NUMBER: _ClassVar[int]
    COVERS_SPEECH_END_FIELD_NUMBER: _ClassVar[int]
    utterance_id: int
    text: str
    start_offset_ms: int
    end_offset_ms: int
    is_stable: bool
    words: _containers.RepeatedCompositeFieldContainer[_audio_pb2.WordTiming]
    decode_ms: int
    stable_text: str
    covers_speech_end: bool
    def __init__(self, utterance_id: _Optional[int] = ..., text: _Optional[str] = ..., start_offset_ms: _Optional[int] = ..., end_offset_ms: _Optional[int] = ..., is_stable: bool = ..., words: _Optional[_Iterable[_Union[_audio_pb2.WordTiming, _Mapping]]] = ..., decode_ms: _Optional[int] = ..., stable_text: _Optional[str] = ..., covers_speech_end: bool = ...) -> None: ...

class EndOfTurn(_message.Message):
    __slots__ = ("utterance_id", "offset_ms", "reason", "completion_probability")
    UTTERANCE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    utterance_id: int
    offset_ms: int
    reason: TurnEndReason
    completion_probability: float
    def __init__(self, utterance_id: _Optional[int] = ..., offset_ms: _Optional[int] = ..., reason: _Optional[_Union[TurnEndReason, str]] = ..., completion_probability: _Optional[float] = ...) -> None: ...

class StreamingRecognizeResponse(_message.Message):
    __slots__ = ("speech_started", "speech_stopped", "partial", "final", "end_of_turn")
    SPEECH_STARTED_FIELD_NUMBER: _ClassVar[int]
    SPEECH_STOPPED_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    END_OF_TURN_FIELD_NUMBER: _ClassVar[int]
    speech_started: SpeechStarted
    speech_stopped: SpeechStopped
    partial: Transcript
    final: Transcript
    end_of_turn: EndOfTurn
    def __init__(self, speech_started: _Optional[_Union[SpeechStarted, _Mapping]] = ..., speech_stopped: _Optional[_Union[SpeechStopped, _Mapping]] = ..., partial: _Optional[_Union[Transcript, _Mapping]] = ..., final: _Optional[_Union[Transcript, _Mapping]] = ..., end_of_turn: _Optional[_Union[EndOfTurn, _Mapping]] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio: bytes
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("transcript", "audio_duration_ms")
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    transcript: Transcript
    audio_duration_ms: int
    def __init__(self, transcript: _Optional[_Union[Transcript, _Mapping]] = ..., audio_duration_ms: _Optional[int] = ...) -> None: ...
