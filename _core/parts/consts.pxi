# Tunables and HTTP/2 constants shared by the parts (RFC 9113 §6).
cdef enum:
    FRAME_HEADER = 9
    T_DATA = 0
    T_WINDOW_UPDATE = 8
    F_END_STREAM = 1
    F_PADDED = 8
    MAX_WINDOW = 2147483647
    READ_CHUNK = 262144
    DEFAULT_WINDOW = 65535
    DEFAULT_FRAME = 16384
    PREFACE_LEN = 24
    MAX_SEGS = 64
    RECORD_ROOM = 32768
    RECORD_PAYLOAD = 16384
    BIG_FRAME = 65536
    # error codes (RFC 9113 §7) the pump raises through owner.pump_error
    PROTOCOL_ERROR = 1
    FLOW_CONTROL_ERROR = 3
    STREAM_CLOSED = 5
    FRAME_SIZE_ERROR = 6
    ENHANCE_YOUR_CALM = 11
    # abuse limit, named and defaulted as Envoy's max_consecutive_inbound_frames_with_empty_payload
    MAX_CONSECUTIVE_EMPTY_FRAMES = 1
