"""Provider quirks as playbooks of the session core: events in, commands out, no sockets, no network."""

from __future__ import annotations

from gateway.session.contexts import ContextState
from gateway.session.core import SessionState
from tests.session.playbook import Playbook

V = "21m00Tcm4TlvDq8ikWAM"
V2 = "AZnzlk1XvdvUeBnXmlld"
DG = {"query": {"encoding": "linear16", "sample_rate": "16000"}, "header": {"Authorization": "Token k"}}
CARTESIA = {"query": {"cartesia_version": "2025-04-16", "api_key": "k"}}
GEN = {"model_id": "sonic-2", "voice": {"mode": "id", "id": "a0e99841-438c-4a64-b679-ae501e7d6091"},
       "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}}


def eleven(route: str = "tts_multi_stream_input", **query: str) -> Playbook:
    return Playbook("elevenlabs", route, path={"voice_id": V}, query={"output_format": "pcm_16000", **query},
                    header={"xi-api-key": "k"})


# -- Deepgram --------------------------------------------------------------------------------------

def test_deepgram_finalize_then_closestream() -> None:
    pb = Playbook("deepgram", "listen_live", **DG)
    pb.start() << ["Open ''#1", "Read ''#1", "Turn ''#1"]
    r = pb.req("")
    pb.gradium(r, {"type": "ready", "request_id": "req_1"}) << []
    pb.client(b"\x00\x01" * 800, at=1) << ["Audio ''#1 <1600 bytes>"]
    pb.gradium(r, {"type": "text", "text": "hello", "start_s": 0.1}) << []   # held until final
    pb.client({"type": "Finalize"}, at=2) << ["FlushAudio ''#1", 'Gradium \'\'#1 flush {"flush_id":1}']
    pb.gradium(r, {"type": "flushed", "flush_id": 1}) << [
        'Client Results {"duration":0.1,"from_finalize":true,"is_final":true,"speech_final":false,"start":0.0}']
    pb.client({"type": "CloseStream"}, at=3) << ["FlushAudio ''#1", "Gradium ''#1 end_of_stream {}"]
    assert r.state is ContextState.DRAINING
    pb.gradium(r, {"type": "end_of_stream"}) << [
        'Client Metadata {"channels":1,"duration":0.0,'
        '"sha256":"e6ab9edb8bf8b83b838093e880840504603533fc3ac91bea382e9efc5db11998","transaction_key":"deprecated"}']
    pb.done(r, at=4) << ["ContextOver None done", "Close 1000", "Drop ''#1"]


def test_deepgram_unknown_text_is_ignored_and_keepalive_keeps_the_socket() -> None:
    pb = Playbook("deepgram", "listen_live", **DG)
    pb.start()
    pb.client({"type": "Whatever"}, at=5) << []
    pb.tick(10) << ['Client Error {"code":"NET-0001","description":"No input received within 10 seconds",'
                    '"message":"No input received within 10 seconds","variant":"Timeout"}', "Close 1011 NET-0001"]
    pb = Playbook("deepgram", "listen_live", **DG)
    pb.start()
    pb.client({"type": "KeepAlive"}, at=5) << []
    pb.tick(10) << []   # the keep-alive counts as input
    assert pb.core.state is SessionState.OPEN


def test_deepgram_closestream_with_a_slow_upstream_is_not_an_idle_timeout() -> None:
    # issue 8 item 7: after CloseStream the client is owed its final results; its silence is not idleness
    pb = Playbook("deepgram", "listen_live", **DG)
    pb.start()
    r = pb.req("")
    pb.client(b"\x00\x01" * 800, at=1)
    pb.client({"type": "CloseStream"}, at=2)
    pb.tick(12) << []
    pb.tick(60) << []
    pb.gradium(r, {"type": "end_of_stream"})
    pb.done(r, at=61) << ["ContextOver None done", "Close 1000", "Drop ''#1"]


def test_flux_configure_and_force_end_turn() -> None:
    pb = Playbook("deepgram", "listen_flux", **DG)
    pb.start()
    r = pb.req("")
    pb.gradium(r, {"type": "ready", "request_id": "req_1"}) << ['Client Connected {"sequence_id":0}']
    pb.client({"type": "Configure", "thresholds": {"eot_threshold": 0.8}}) << [
        'Client ConfigureSuccess {"sequence_id":1}']
    pb.client(b"\x00\x01" * 800, at=1) << ["Audio ''#1 <1600 bytes>"]
    pb.gradium(r, {"type": "text", "text": "hello", "start_s": 0.1}) << [
        'Client TurnInfo {"audio_window_end":0.0,"audio_window_start":0.0,"end_of_turn_confidence":0.0,'
        '"event":"StartOfTurn","sequence_id":2,"transcript":"Hello","turn_index":0}']
    # ForceEndTurn: the transform asks for a Gradium flush (the typed SEND_GRADIUM event)
    pb.client({"type": "ForceEndTurn"}, at=2) << ['Gradium \'\'#1 flush {"flush_id":"turn-1"}']


# -- Cartesia --------------------------------------------------------------------------------------

def test_cartesia_continue_flush_and_the_next_request_waits_its_turn() -> None:
    pb = Playbook("cartesia", "tts_websocket", **CARTESIA)
    pb.start() << ["WarmUp"]
    pb.client({**GEN, "context_id": "a", "transcript": "Hello there ", "continue": True}) << [
        "Open 'a'#1", "Read 'a'#1", "Turn 'a'#1", 'Gradium \'a\'#1 text {"text":"Hello there"}',
        "StartTimer 'a'#1 3s"]   # max_buffer_delay_ms defaults to 3000
    # continue + flush: this Gradium request ends; the context goes on in the next one
    pb.client({**GEN, "context_id": "a", "transcript": "friend. ", "continue": True, "flush": True}) << [
        'Gradium \'a\'#1 text {"text":"friend."}', "Gradium 'a'#1 end_of_stream {}", "CancelTimer 'a'#1"]
    pb.client({**GEN, "context_id": "a", "transcript": "Bye", "continue": False}) << [
        "Open 'a'#2", "Read 'a'#2", 'Gradium \'a\'#2 text {"text":"Bye"}', "Gradium 'a'#2 end_of_stream {}"]
    r1, r2 = pb.req("a", 1), pb.req("a", 2)
    assert (r1.state, r2.state) == (ContextState.DRAINING, ContextState.INPUT_ENDED)
    pb.gradium(r1, {"type": "audio", "audio": "AAAA", "start_s": 0, "stop_s": 0.08}) << [
        'Client chunk {"context_id":"a","data":"AAAA","done":false,"flush_id":1,"status_code":206}']
    pb.gradium(r1, {"type": "end_of_stream"}) << [
        'Client flush_done {"context_id":"a","done":false,"flush_done":true,"flush_id":1,"status_code":206}']
    pb.done(r1) << ["Turn 'a'#2", "Drop 'a'#1"]
    assert r2.state is ContextState.DRAINING


def test_a_shared_gradium_socket_starts_connecting_before_the_upgrade() -> None:
    """Cartesia's contexts share one Gradium socket: with the caller judged at the handshake, its handshake
    starts before the 101 (overlapping the client's first message), not after it."""
    pb = Playbook("cartesia", "tts_websocket", **CARTESIA)
    pb.warm() << []  # no verdict on the caller yet: nothing to open with
    pb.core.preauth = "gsk_caller"
    pb.warm() << ["WarmUp"]
    assert pb.core.key == "gsk_caller"
    solo = Playbook("elevenlabs", "tts_stream_input", path={"voice_id": "v"}, query={"xi_api_key": "k"})
    solo.core.preauth = "gsk_caller"
    solo.warm() << []  # one Gradium socket per request, opened by the first message: nothing shared to warm


def test_cartesia_buffer_delay_timer_flushes_inline() -> None:
    pb = Playbook("cartesia", "tts_websocket", **CARTESIA)
    pb.start()
    pb.client({**GEN, "context_id": "a", "transcript": "Hello the", "continue": True, "max_buffer_delay_ms": 500}) << [
        "Open 'a'#1", "Read 'a'#1", "Turn 'a'#1", 'Gradium \'a\'#1 text {"text":"Hello"}', "StartTimer 'a'#1 0.5s"]
    r = pb.req("a")
    pb.timer(r) << ['Gradium \'a\'#1 text {"text":"the <flush>"}']   # the word still waiting goes now


def test_cartesia_cancel_and_a_message_for_the_cancelled_context() -> None:
    pb = Playbook("cartesia", "tts_websocket", **CARTESIA)
    pb.start()
    pb.client({**GEN, "context_id": "b", "transcript": "x ", "continue": True})
    pb.client({"context_id": "b", "cancel": True}) << ["Drop 'b'#1", "ContextOver 'b' cleared"]
    pb.client({**GEN, "context_id": "b", "transcript": "y", "continue": True}) << [
        "ContextOver 'b' error",
        'Client error {"code":400,"context_id":"b","done":true,"error":"Invalid message: Context b was cancelled; '
        'start a new context_id","error_code":"invalid_request","message":"Context b was cancelled; start a new '
        'context_id","status_code":400,"title":"Invalid message"}']
    assert pb.core.state is SessionState.OPEN   # only that context's error; the socket goes on


# -- ElevenLabs ------------------------------------------------------------------------------------

def test_elevenlabs_close_context_then_close_socket() -> None:
    pb = eleven()
    pb.start() << ["WarmUp"]
    pb.client({"text": "Hello there ", "context_id": "a"}) << [
        "Open 'a'#1", "Read 'a'#1", "Turn 'a'#1", 'Gradium \'a\'#1 text {"text":"Hello there"}']
    pb.client({"context_id": "a", "close_context": True}) << ["Gradium 'a'#1 end_of_stream {}"]
    pb.client({"context_id": "a", "close_context": True}) << []   # nothing open under that id any more
    r = pb.req("a")
    pb.gradium(r, {"type": "end_of_stream"}) << [
        'Client {"contextId":"a","context_id":"a","isFinal":true,"is_final":true}']
    pb.done(r) << ["ContextOver 'a' done", "Drop 'a'#1"]
    pb.client({"close_socket": True}) << ["Close 1000"]


def test_elevenlabs_sixth_context_is_refused() -> None:
    pb = eleven()
    pb.start()
    for i in range(5):
        pb.client({"text": " ", "context_id": f"c{i}"})
    pb.client({"text": " ", "context_id": "c5"}) << [
        'Client {"code":1008,"error":"max_active_conversations",'
        '"message":"Maximum simultaneous contexts per WebSocket connection exceeded (5)"}', "Close 1008"]


def test_elevenlabs_flush_creates_an_unknown_context() -> None:
    pb = eleven()
    pb.start()
    pb.client({"context_id": "new", "flush": True}) << [
        "Open 'new'#1", "Read 'new'#1", "Turn 'new'#1", 'Gradium \'new\'#1 text {"text":"<flush>"}']


def test_elevenlabs_dialogue_voice_change_starts_the_next_request_in_order() -> None:
    pb = Playbook("elevenlabs", "dialogue_multi_stream_input", query={"output_format": "pcm_16000"},
                  header={"xi-api-key": "k"})
    pb.start()
    pb.client({"context_id": "d", "voices": [V, V2]}) << ["Open 'd'#1", "Read 'd'#1", "Turn 'd'#1"]
    pb.client({"context_id": "d", "inputs": [{"text": "Hi there", "voice_id": V},
                                             {"text": "Hello back", "voice_id": V2}]}) << [
        'Gradium \'d\'#1 text {"text":"Hi there"}', "Gradium 'd'#1 end_of_stream {}",
        "Open 'd'#2", "Read 'd'#2", 'Gradium \'d\'#2 text {"text":"Hello back"}']
    r1, r2 = pb.req("d", 1), pb.req("d", 2)
    assert (r1.segment, r2.segment) == (V, V2)   # the second line's request has the other voice's params
    assert r2.message is not None and r2.message["segment"] == V2
    pb.gradium(r1, {"type": "end_of_stream"}) << []   # its `end` is hidden: the context goes on
    pb.done(r1) << ["Turn 'd'#2", "Drop 'd'#1"]


# -- idle timeouts ---------------------------------------------------------------------------------

def test_elevenlabs_inactivity_timeout_counts_silence() -> None:
    pb = eleven("tts_stream_input", inactivity_timeout="5")
    pb.start() << []
    pb.client({"text": " "}, at=0.5) << ["Open ''#1", "Read ''#1", "Turn ''#1"]
    pb.tick(5) << []
    pb.tick(5.6) << [
        'Client {"code":1008,"error":"input_timeout_exceeded","message":"Have not received a new text input within '
        'the timeout. Streaming input terminated."}', "Close 1008"]


def test_elevenlabs_inactivity_timeout_never_cuts_the_final_audio() -> None:
    # issue 8 item 7: after {"text": ""} the client waits for its audio; that wait is not inactivity
    pb = eleven("tts_stream_input", inactivity_timeout="5")
    pb.start()
    pb.client({"text": " "}, at=0.5)
    r = pb.req("")
    pb.client({"text": "Hello there "}, at=1)
    pb.client({"text": ""}, at=2) << ["Gradium ''#1 end_of_stream {}"]
    pb.tick(8) << []
    pb.tick(30) << []
    pb.gradium(r, {"type": "end_of_stream"}) << ['Client {"isFinal":true}']
    pb.done(r, at=31) << ["ContextOver None done", "Close 1000", "Drop ''#1"]


def test_a_drain_has_its_own_deadline() -> None:
    pb = Playbook("deepgram", "listen_live", **DG)
    pb.start()
    pb.client({"type": "CloseStream"}, at=1)
    assert pb.core.deadline() == 121.0
    pb.tick(121) << ['Client Error {"code":"NET-0000","description":"Gradium did not finish in time",'
                     '"message":"Gradium did not finish in time","variant":"ServerError"}', "Close 1011 NET-0000"]


def test_first_message_deadline_and_shutdown() -> None:
    pb = eleven("tts_stream_input")
    pb.start()
    assert pb.core.state is SessionState.OPENING
    pb.tick(20) << ['Client {"code":1008,"error":"input_timeout_exceeded","message":"No initial message received"}',
                    "Close 1008"]
    pb = eleven()
    pb.start()
    pb.client({"text": "Hello ", "context_id": "a"})
    from gateway.session.commands import Shutdown
    pb.event(Shutdown()) << ["Gradium 'a'#1 end_of_stream {}"]   # finish what is owed first...
    r = pb.req("a")
    pb.gradium(r, {"type": "end_of_stream"})
    pb.done(r) << ["ContextOver 'a' done", "Close 1001", "Drop 'a'#1"]   # ...then going away
