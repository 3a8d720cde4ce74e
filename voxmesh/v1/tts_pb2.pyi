from voxmesh.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SynthesisConfig(_message.Message):
    __slots__ = ("voice", "speed", "sample_rate_hertz", "language_code", "chunk_duration_ms", "session_id")
    VOICE_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    voice: str
    speed: float
    sample_rate_hertz: int
    language_code: str
    chunk_duration_ms: int
    session_id: str
    def __init__(self, voice: _Optional[str] = ..., speed: _Optional[float] = ..., sample_rate_hertz: _Optional[int] = ..., language_code: _Optional[str] = ..., chunk_duration_ms: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class Flush(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Cancel(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamingSynthesizeRequest(_message.Message):
    __slots__ = ("config", "text", "flush", "end_of_input", "cancel")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    END_OF_INPUT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    config: SynthesisConfig
    text: str
    flush: Flush
    end_of_input: _audio_pb2.EndOfInput
    cancel: Cancel
    def __init__(self, config: _Optional[_Union[SynthesisConfig, _Mapping]] = ..., text: _Optional[str] = ..., flush: _Optional[_Union[Flush, _Mapping]] = ..., end_of_input: _Optional[_Union[_audio_pb2.EndOfInput, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ...) -> None: ...

class SegmentStarted(_message.Message):
    __slots__ = ("segment_index", "text", "sample_offset", "synthesis_ms", "sample_count", "engine", "is_fallback", "cache_hit", "words", "timing_source")
    SEGMENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SYNTHESIS_MS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    IS_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    TIMING_SOURCE_FIELD_NUMBER: _ClassVar[int]
    segment_index: int
    text: str
    sample_offset: int
    synthesis_ms: int
    sample_count: int
    engine: str
    is_fallback: bool
    cache_hit: bool
    words: _containers.RepeatedCompositeFieldContainer[_audio_pb2.WordTiming]
    timing_source: str
    def __init__(self, segment_index: _Optional[int] = ..., text: _Optional[str] = ..., sample_offset: _Optional[int] = ..., synthesis_ms: _Optional[int] = ..., sample_count: _Optional[int] = ..., engine: _Optional[str] = ..., is_fallback: bool = ..., cache_hit: bool = ..., words: _Optional[_Iterable[_Union[_audio_pb2.WordTiming, _Mapping]]] = ..., timing_source: _Optional[str] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("audio", "sample_offset", "segment_index", "words")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    sample_offset: int
    segment_index: int
    words: _containers.RepeatedCompositeFieldContainer[_audio_pb2.WordTiming]
    def __init__(self, audio: _Optional[bytes] = ..., sample_offset: _Optional[int] = ..., segment_index: _Optional[int] = ..., words: _Optional[_Iterable[_Union[_audio_pb2.WordTiming, _Mapping]]] = ...) -> None: ...

class SynthesisDone(_message.Message):
    __slots__ = ("total_samples", "is_cancelled", "engine", "is_fallback")
    TOTAL_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    IS_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    IS_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    total_samples: int
    is_cancelled: bool
    engine: str
    is_fallback: bool
    def __init__(self, total_samples: _Optional[int] = ..., is_cancelled: bool = ..., engine: _Optional[str] = ..., is_fallback: bool = ...) -> None: ...

class StreamingSynthesizeResponse(_message.Message):
    __slots__ = ("segment", "audio", "done")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    segment: SegmentStarted
    audio: AudioChunk
    done: SynthesisDone
    def __init__(self, segment: _Optional[_Union[SegmentStarted, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., done: _Optional[_Union[SynthesisDone, _Mapping]] = ...) -> None: ...

class ListVoicesRequest(_message.Message):
    __slots__ = ("language_code",)
    LANGUAGE_CODE_FIELD_NUMBER: _ClassVar[int]
    language_code: str
    def __init__(self, language_code: _Optional[str] = ...) -> None: ...

class Voice(_message.Message):
    __slots__ = ("id", "engine", "language_code", "native_sample_rate_hertz", "is_default")
    ID_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODE_FIELD_NUMBER: _ClassVar[int]
    NATIVE_SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    id: str
    engine: str
    language_code: str
    native_sample_rate_hertz: int
    is_default: bool
    def __init__(self, id: _Optional[str] = ..., engine: _Optional[str] = ..., language_code: _Optional[str] = ..., native_sample_rate_hertz: _Optional[int] = ..., is_default: bool = ...) -> None: ...

class ListVoicesResponse(_message.Message):
    __slots__ = ("voices",)
    VOICES_FIELD_NUMBER: _ClassVar[int]
    voices: _containers.RepeatedCompositeFieldContainer[Voice]
    def __init__(self, voices: _Optional[_Iterable[_Union[Voice, _Mapping]]] = ...) -> None: ...
