"""The jitter buffer: order, reordering, loss concealment, duplicates, wrap and source changes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callplane.core.media.jitter import (
    ALAW_SILENCE,
    MAX_CONCEALED_REPEATS,
    MULAW_SILENCE,
    OVERFLOW_SLACK_FRAMES,
    JitterBuffer,
    JitterBufferError,
)

SILENCE = bytes([MULAW_SILENCE]) * 160


def frame(sequence: int) -> bytes:
    """A recognisable 160-byte payload for a sequence number."""
    return b"%05d" % sequence * 32


def label(output: bytes) -> int | str:
    """The sequence number a popped frame came from, or "-" for silence."""
    return "-" if output == SILENCE else int(output[:5])


def push(buffer: JitterBuffer, sequence: int, ssrc: int | None = None) -> None:
    sequence %= 65536
    buffer.push(sequence, 160 * sequence, frame(sequence), ssrc)


def run(arrivals: list[list[int]], depth: int = 3) -> tuple[JitterBuffer, list[int | str]]:
    """Each tick pushes that tick's packets, then pops one frame; returns what was heard."""
    buffer = JitterBuffer(depth)
    heard = []
    for tick in arrivals:
        for sequence in tick:
            push(buffer, sequence)
        heard.append(label(buffer.pop()))
    return buffer, heard


def test_silence_until_the_depth_is_buffered_then_frames_in_order() -> None:
    buffer, heard = run([[10], [11], [12], [13], []])
    assert heard == ["-", "-", 10, 11, 12]
    assert buffer.stats.played == 3
    assert buffer.stats.concealed == 0


def test_packets_reordered_within_the_depth_play_in_sequence_order() -> None:
    _, heard = run([[2], [1], [0], [4], [3], [5], [], []])
    assert heard == ["-", "-", 0, 1, 2, 3, 4, 5]


def test_a_lost_frame_is_concealed_by_repeating_the_last_one() -> None:
    buffer, heard = run([[0], [1], [2], [4], [5], [6], [], [], []])
    assert heard == ["-", "-", 0, 1, 2, 2, 4, 5, 6]
    assert buffer.stats.concealed == 1
    assert buffer.stats.played == 6


def test_a_long_loss_repeats_at_most_n_times_then_silence() -> None:
    lost = MAX_CONCEALED_REPEATS + 3
    arrivals = [[0], [1], [2], *([] for _ in range(lost)), [3 + lost], [4 + lost], [5 + lost]]
    buffer, heard = run([*arrivals, [], []])
    repeats = [2] * MAX_CONCEALED_REPEATS
    # then silence; the stream that comes back fills the depth again before it plays
    assert heard == ["-", "-", 0, 1, 2, *repeats, "-", "-", "-", 9, 10, 11]
    assert buffer.stats.concealed == MAX_CONCEALED_REPEATS + 1
    assert buffer.stats.late == 0


def test_duplicates_are_dropped_and_counted() -> None:
    buffer, heard = run([[0], [1, 1], [2, 0], [3], [3], [4], [], []])
    assert heard == ["-", "-", 0, 1, 2, 3, 4, 4]
    assert buffer.stats.duplicate == 3
    assert buffer.stats.received == 8


def test_a_packet_after_its_slot_was_played_is_late() -> None:
    buffer, heard = run([[0], [1], [2], [4], [5], [6], [3], [], []])
    assert heard == ["-", "-", 0, 1, 2, 2, 4, 5, 6]
    assert buffer.stats.late == 1
    assert buffer.stats.concealed == 1


def test_sequence_wrap_at_65535_keeps_the_order() -> None:
    _, heard = run([[65534], [65535], [1], [0], [2], [3], [], []])
    assert heard == ["-", "-", 65534, 65535, 0, 1, 2, 3]


def test_a_new_ssrc_resets_the_buffer() -> None:
    buffer = JitterBuffer(2)
    for sequence in (100, 101, 102):
        push(buffer, sequence, ssrc=1)
    assert label(buffer.pop()) == 100
    push(buffer, 7, ssrc=2)  # re-INVITE: new source, unrelated sequence numbers
    push(buffer, 8, ssrc=2)
    assert [label(buffer.pop()), label(buffer.pop())] == [7, 8]
    assert buffer.stats.resets == 1
    assert buffer.stats.late == 0


def test_a_sequence_restart_far_behind_is_believed_when_the_next_follows() -> None:
    buffer, heard = run([[5000], [5001], [5002], [10], [5003], [20], [21], [22], [], []])
    assert heard == ["-", "-", 5000, 5001, 5002, 5003, "-", "-", 21, 22]
    assert buffer.stats.resets == 1
    assert buffer.stats.late == 2  # the stray 10 and the unconfirmed 20


def test_after_a_pause_the_stream_resumes_where_it_left_off() -> None:
    # silence suppression: the sender stops, then goes on with the next sequence number
    pause = 10
    arrivals = [[0], [1], [2], *([] for _ in range(pause)), [3], [4], [5], []]
    buffer, heard = run(arrivals)
    silence_ticks = pause - MAX_CONCEALED_REPEATS
    assert heard == ["-", "-", 0, 1, 2, *[2] * MAX_CONCEALED_REPEATS, *["-"] * silence_ticks, 3, 4]
    assert buffer.stats.late == 0
    assert buffer.stats.concealed == MAX_CONCEALED_REPEATS + 1


def test_a_burst_after_a_stall_is_trimmed_back_to_the_depth() -> None:
    buffer = JitterBuffer(2)
    for sequence in (0, 1):
        push(buffer, sequence)
    assert label(buffer.pop()) == 0
    for sequence in range(2, 20):
        push(buffer, sequence)
    assert buffer.stats.overflow > 0
    assert len(buffer) <= 2 + OVERFLOW_SLACK_FRAMES
    assert [label(buffer.pop()) for _ in range(len(buffer))][-2:] == [18, 19]


def test_a_single_packet_plays_after_waiting_the_depth() -> None:
    buffer = JitterBuffer(3)
    push(buffer, 42)
    assert [label(buffer.pop()) for _ in range(3)] == ["-", "-", 42]


def test_silence_is_the_codec_silence_byte() -> None:
    buffer = JitterBuffer(1, silence_byte=ALAW_SILENCE, max_repeats=0)
    assert buffer.pop() == bytes([ALAW_SILENCE]) * 160
    push(buffer, 0)
    push(buffer, 2)
    assert label(buffer.pop()) == 0
    assert buffer.pop() == bytes([ALAW_SILENCE]) * 160
    assert label(buffer.pop()) == 2


@pytest.mark.parametrize(
    "arguments",
    [{"depth_frames": 0}, {"silence_byte": 256}, {"frame_bytes": 0}, {"max_repeats": -1}],
)
def test_impossible_parameters_are_refused(arguments: dict[str, int]) -> None:
    with pytest.raises(JitterBufferError):
        JitterBuffer(**arguments)


@given(
    st.integers(0, 65535),
    st.permutations(range(12)),
    st.integers(1, 4),
)
def test_any_shuffle_within_the_depth_plays_every_frame_once_in_order(
    start: int, order: list[int], depth: int
) -> None:
    """Packets displaced by less than the depth are never lost, whatever the wrap."""
    arrival_tick = {
        index: max(index, min(11, index + (order[index] - index) % depth)) for index in range(12)
    }
    buffer = JitterBuffer(depth)
    out = []
    for tick in range(12 + depth + 2):
        for index in range(12):
            if arrival_tick[index] == tick:
                push(buffer, start + index)
        out.append(buffer.pop())
    played = [o for o in out if o != SILENCE][:12]
    assert played == [frame((start + index) % 65536) for index in range(12)]
    assert buffer.stats.played == 12
    assert buffer.stats.late == 0


@given(st.lists(st.tuples(st.integers(0, 65535), st.booleans()), max_size=200))
def test_any_arrivals_give_one_frame_per_tick_and_consistent_counters(
    events: list[tuple[int, bool]],
) -> None:
    buffer = JitterBuffer(3)
    pops = 0
    for sequence, tick in events:
        push(buffer, sequence)
        if tick:
            assert len(buffer.pop()) == 160
            pops += 1
    stats = buffer.stats
    assert stats.received == len(events)
    assert stats.played + stats.concealed <= pops
    assert stats.played + stats.late + stats.duplicate + stats.overflow + len(buffer) <= (
        stats.received
    )
